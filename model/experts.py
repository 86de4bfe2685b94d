"""Scripted experts: Meta-World's own ``metaworld.policies`` and a Pendulum energy swing-up with a PD
(LQR-like) catch near the top. An expert is a callable ``obs -> action`` (actions may exceed the bounds;
callers clip before stepping or encoding)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from .envs import EnvError


def metaworld_policy_name(task_name: str) -> str:
    """``pick-place-v3`` -> ``SawyerPickPlaceV3Policy``."""
    return "Sawyer" + "".join(p.capitalize() for p in task_name.split("-")) + "Policy"


class PendulumExpert:
    """theta = 0 is upright; dynamics theta'' = 3g/(2l) sin(theta) + 3/(m l^2) u with g = 10, m = l = 1."""

    G_TERM = 15.0  # 3 g / (2 l)
    U_MAX = 2.0

    def __init__(self, kp: float = 10.0, kd: float = 2.0, catch_cos: float = 0.85):
        self.kp, self.kd, self.catch_cos = kp, kd, catch_cos

    def __call__(self, obs) -> np.ndarray:
        c, s, w = float(obs[0]), float(obs[1]), float(obs[2])
        theta = math.atan2(s, c)
        if c > self.catch_cos:  # linearised: theta'' = 15 theta + 3 u -> u = -(kp theta + kd w)
            u = -(self.kp * theta + self.kd * w)
        else:  # pump energy E = w^2 / 2 + 15 cos(theta) towards the upright value 15; dE/dt = 3 u w
            energy = 0.5 * w * w + self.G_TERM * c
            direction = w if abs(w) > 1e-3 else 1.0
            u = self.U_MAX * math.copysign(1.0, (self.G_TERM - energy) * direction)
        return np.array([np.clip(u, -self.U_MAX, self.U_MAX)], dtype=np.float32)


class MetaWorldExpert:
    def __init__(self, task_name: str):
        try:
            import metaworld.policies as policies
        except ImportError as e:
            raise EnvError(f"Meta-World experts need metaworld installed ({e})") from None
        name = metaworld_policy_name(task_name)
        cls = getattr(policies, name, None)
        if cls is None:
            raise EnvError(f"no scripted Meta-World expert {name} for task {task_name!r}")
        self.policy = cls()

    def __call__(self, obs) -> np.ndarray:
        with warnings.catch_warnings():  # "Constant(s) may be too high": we clip to the bounds ourselves
            warnings.simplefilter("ignore")
            return np.asarray(self.policy.get_action(np.asarray(obs, dtype=np.float64)), dtype=np.float32)


def make_expert(env_id: str):
    kind, _, name = env_id.partition(":")
    if kind == "metaworld":
        return MetaWorldExpert(name)
    if env_id == "gym:Pendulum-v1":
        return PendulumExpert()
    raise EnvError(f"no scripted expert for {env_id!r}")
