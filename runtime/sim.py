"""Simulators by id, behind one small interface: the one copy of the environment code, used by ``lram run``
(through gym_adapter), by evaluation, data collection, verify and calibration (through model/envs.py).

Ids:
- ``metaworld:<task>`` (e.g. ``metaworld:pick-place-v3``): Meta-World's goal-observable env with a fresh random
  layout per ``reset(seed)``, 500-step episodes, success = ``info["success"]``, terminated on success.
- ``gym:Pendulum-v1``: classic swing-up, 200 steps; success = upright (cos theta > 0.95) for each of the last
  ``PENDULUM_HOLD`` steps of the episode (reported at the end, no early termination).
- ``gym:<any registered gymnasium id>``: its own termination; success = ``info["success"]`` when the env
  reports one, else undefined (None).

gymnasium / metaworld (the ``sim`` extra) are imported only when an env is made; only numpy here otherwise.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

METAWORLD_MAX_STEPS = 500
PENDULUM_MAX_STEPS = 200
PENDULUM_HOLD = 20


class EnvError(ValueError):
    """An unknown or unavailable environment id."""


@dataclass
class StepResult:
    obs: np.ndarray
    reward: float
    done: bool  # the episode is over (terminated, truncated, on success, or out of time)
    success: bool | None  # None where the task defines no success


class SimEnv:
    """One episode at a time: ``reset(seed) -> obs``, ``step(action) -> StepResult``. Continuous actions are
    clipped to the declared bounds before they reach the simulator."""

    env_id: str
    max_steps: int | None
    obs_shape: tuple
    action_low: tuple | None = None  # continuous
    action_high: tuple | None = None
    action_n: int | None = None  # discrete

    def __init__(self, env_id: str, env, max_steps: int | None):
        self.env_id, self.env, self.max_steps = env_id, env, max_steps
        self.obs_shape = tuple(env.observation_space.shape)
        space = env.action_space
        if hasattr(space, "low"):
            self.action_low = tuple(float(x) for x in space.low)
            self.action_high = tuple(float(x) for x in space.high)
        else:
            self.action_n = int(space.n)
        self.t = 0

    def reset(self, seed: int) -> np.ndarray:
        self.t = 0
        obs, _ = self.env.reset(seed=int(seed))
        return np.asarray(obs, dtype=np.float32)

    def clip(self, action):
        if self.action_n is not None:
            return int(np.asarray(action).reshape(-1)[0])
        a = np.asarray(action, dtype=np.float64).reshape(len(self.action_low))
        return np.clip(a, self.action_low, self.action_high).astype(np.float32)

    def step(self, action) -> StepResult:
        obs, reward, term, trunc, info = self.env.step(self.clip(action))
        self.t += 1
        done = bool(term) or bool(trunc) or (self.max_steps is not None and self.t >= self.max_steps)
        success = bool(info["success"]) if "success" in info else None
        return StepResult(np.asarray(obs, dtype=np.float32), float(reward), done, success)

    def close(self):
        self.env.close()


class MetaWorldEnv(SimEnv):
    def __init__(self, task_name: str, seed: int = 0):
        gym = _gymnasium()
        try:
            import metaworld  # noqa: F401  (registers the Meta-World/* ids)
        except ImportError as e:
            raise EnvError(f"metaworld environments need gymnasium[mujoco] and metaworld installed ({e})") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                env = gym.make("Meta-World/goal_observable", env_name=task_name, seed=seed, disable_env_checker=True)
            except Exception as e:  # metaworld raises assorted errors for unknown names
                raise EnvError(f"unknown Meta-World task {task_name!r}: {e}") from None
        raw = env.unwrapped
        raw._freeze_rand_vec = False  # a fresh layout per reset ...
        raw.seeded_rand_vec = True  # ... drawn from the reset seed
        super().__init__(f"metaworld:{task_name}", env, METAWORLD_MAX_STEPS)

    def reset(self, seed: int) -> np.ndarray:
        self.t = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Meta-World's reset() ignores its seed argument; the layout comes from np_random, so seed that
            # directly: the layout is then a function of the seed alone, not of the env's reset history.
            self.env.unwrapped.seed(int(seed))
            obs, _ = self.env.reset()
        return np.asarray(obs, dtype=np.float32)

    def step(self, action) -> StepResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs, reward, term, trunc, info = self.env.step(self.clip(action))
        self.t += 1
        success = bool(info.get("success", 0.0) > 0)
        done = success or bool(term) or bool(trunc) or self.t >= self.max_steps
        return StepResult(np.asarray(obs, dtype=np.float32), float(reward), done, success)


class PendulumEnv(SimEnv):
    def __init__(self, seed: int = 0):
        super().__init__("gym:Pendulum-v1", _gymnasium().make("Pendulum-v1"), PENDULUM_MAX_STEPS)
        self.upright = 0

    def reset(self, seed: int) -> np.ndarray:
        self.upright = 0
        return super().reset(seed)

    def step(self, action) -> StepResult:
        obs, reward, term, trunc, _ = self.env.step(self.clip(action))
        self.t += 1
        self.upright = self.upright + 1 if obs[0] > 0.95 else 0
        done = bool(term) or bool(trunc) or self.t >= self.max_steps
        success = done and self.upright >= PENDULUM_HOLD
        return StepResult(np.asarray(obs, dtype=np.float32), float(reward), done, success)


def _gymnasium():
    try:
        import gymnasium as gym
    except ImportError as e:
        raise EnvError(f"simulated environments need the 'sim' extra (gymnasium): {e}") from None
    return gym


def make_sim(env_id: str, seed: int = 0) -> SimEnv:
    kind, sep, name = env_id.partition(":")
    if not sep or not name:
        raise EnvError(f"environment id {env_id!r} must look like 'metaworld:pick-place-v3' or 'gym:Pendulum-v1'")
    if kind == "metaworld":
        return MetaWorldEnv(name, seed=seed)
    if kind == "gym" and name == "Pendulum-v1":
        return PendulumEnv(seed=seed)
    if kind == "gym":
        gym = _gymnasium()
        try:
            env = gym.make(name, disable_env_checker=True)
        except Exception as e:  # gymnasium's own errors for unknown / unregistered ids
            raise EnvError(f"unknown gymnasium environment {name!r}: {e}") from None
        return SimEnv(env_id, env, None)
    raise EnvError(f"unknown environment {env_id!r}: use 'metaworld:<task>' or 'gym:<gymnasium id>'")
