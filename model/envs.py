"""Simulators by id, behind one small interface.

Ids:
- ``metaworld:<task>-v3`` (e.g. ``metaworld:pick-place-v3``, ``metaworld:reach-v3``): Meta-World's
  goal-observable env with a fresh random layout per ``reset(seed)``, 500-step episodes, success =
  ``info["success"]``, terminated on success.
- ``gym:Pendulum-v1``: classic swing-up, 200 steps; success = upright (cos theta > 0.95) for each of the
  last ``PENDULUM_HOLD`` steps of the episode (reported at the end, no early termination).

``make_env`` returns the env and the task registry's :class:`TaskSpec` (lram.model.tasks: shapes, action bounds,
reward scale); the ``target_return`` and ``obs_low``/``obs_high`` of a trained checkpoint come from expert data
in training (Meta-World's declared goal bounds are wrong, so they are never read here). Commands that only need
a task's spec (export, verify's adversarial phase, info) use the registry and never create a simulator.
gymnasium / metaworld are imported lazily, when a simulator is made.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from .config import REWARD_SCALES, TaskSpec

METAWORLD_MAX_STEPS = 500
PENDULUM_MAX_STEPS = 200
PENDULUM_HOLD = 20


class EnvError(ValueError):
    """An unknown or unavailable environment id."""


@dataclass
class StepResult:
    obs: np.ndarray
    reward: float
    done: bool  # the episode is over (terminated on success or out of time)
    success: bool


class SimEnv:
    """One episode at a time: ``reset(seed) -> obs``, ``step(action) -> StepResult``. Actions are clipped to
    the declared bounds before they reach the simulator."""

    env_id: str
    max_steps: int
    task: TaskSpec

    def reset(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def step(self, action) -> StepResult:
        raise NotImplementedError

    def clip(self, action) -> np.ndarray:
        return np.clip(np.asarray(action, dtype=np.float64), self.task.action_low, self.task.action_high)

    def close(self):
        pass


class MetaWorldEnv(SimEnv):
    def __init__(self, task_name: str, seed: int = 0):
        try:
            import gymnasium as gym
            import metaworld  # noqa: F401  (registers the Meta-World/* ids)
        except ImportError as e:
            raise EnvError(f"metaworld environments need gymnasium[mujoco] and metaworld installed ({e})") from None
        self.env_id = f"metaworld:{task_name}"
        self.task_name = task_name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.env = gym.make("Meta-World/goal_observable", env_name=task_name, seed=seed)
            except Exception as e:  # metaworld raises assorted errors for unknown names
                raise EnvError(f"unknown Meta-World task {task_name!r}: {e}") from None
        raw = self.env.unwrapped
        raw._freeze_rand_vec = False  # a fresh layout per reset ...
        raw.seeded_rand_vec = True  # ... drawn from the reset seed
        self.max_steps = METAWORLD_MAX_STEPS
        space = self.env.action_space
        self.task = TaskSpec(
            obs_kind="state", obs_shape=tuple(self.env.observation_space.shape), action_kind="continuous",
            action_dim=int(space.shape[0]), action_low=tuple(float(x) for x in space.low),
            action_high=tuple(float(x) for x in space.high), reward_scale=REWARD_SCALES["metaworld"],
            name=self.env_id,
        )
        self.t = 0

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

    def close(self):
        self.env.close()


class PendulumEnv(SimEnv):
    def __init__(self, seed: int = 0):
        try:
            import gymnasium as gym
        except ImportError as e:
            raise EnvError(f"gym environments need gymnasium installed ({e})") from None
        self.env_id = "gym:Pendulum-v1"
        self.env = gym.make("Pendulum-v1")
        self.max_steps = PENDULUM_MAX_STEPS
        space = self.env.action_space
        self.task = TaskSpec(
            obs_kind="state", obs_shape=(3,), action_kind="continuous", action_dim=1,
            action_low=tuple(float(x) for x in space.low), action_high=tuple(float(x) for x in space.high),
            reward_scale=100.0, name=self.env_id,
        )
        self.t = 0
        self.upright = 0

    def reset(self, seed: int) -> np.ndarray:
        self.t, self.upright = 0, 0
        obs, _ = self.env.reset(seed=int(seed))
        return np.asarray(obs, dtype=np.float32)

    def step(self, action) -> StepResult:
        obs, reward, term, trunc, _ = self.env.step(self.clip(action).astype(np.float32))
        self.t += 1
        self.upright = self.upright + 1 if obs[0] > 0.95 else 0
        done = bool(term) or bool(trunc) or self.t >= self.max_steps
        success = done and self.upright >= PENDULUM_HOLD
        return StepResult(np.asarray(obs, dtype=np.float32), float(reward), done, success)

    def close(self):
        self.env.close()


def make_env(env_id: str, seed: int = 0) -> tuple[SimEnv, TaskSpec]:
    """``env_id`` -> (env, task spec without target_return / observation range). The spec comes from the task
    registry (lram.model.tasks), checked against the simulator's own spaces; only ids with a simulator here run."""
    from .tasks import TASKS, TaskError, lookup

    try:
        info = lookup(env_id)
    except TaskError as e:
        raise EnvError(f"unknown environment: {e}") from None
    if info.simulator is None:
        runnable = sorted(t.simulator for t in TASKS.values() if t.simulator and not t.simulator.startswith("metaworld"))
        alt = f"; its Meta-World v3 twin metaworld:{info.name[:-3]}-v3 runs here" if info.id.endswith("-v2") else ""
        raise EnvError(f"{env_id} has no simulator in this project (simulators: metaworld:<task>-v3, "
                       f"{', '.join(runnable)}){alt}; export and verify's adversarial phase need none")
    kind, _, name = info.simulator.partition(":")
    env = MetaWorldEnv(name, seed=seed) if kind == "metaworld" else PendulumEnv(seed=seed)
    spec = replace(info.spec(), target_return=None)  # a trained checkpoint's own target comes from its data
    sim = env.task
    if (spec.obs_shape, spec.action_dim, spec.action_low, spec.action_high) != (
            sim.obs_shape, sim.action_dim, sim.action_low, sim.action_high):
        env.close()
        raise EnvError(f"{env_id}: the simulator declares obs {sim.obs_shape}, actions {sim.action_dim} in "
                       f"[{sim.action_low}, {sim.action_high}] but the task registry says {spec.obs_shape}, "
                       f"{spec.action_dim} in [{spec.action_low}, {spec.action_high}]")
    env.task = spec
    return env, spec
