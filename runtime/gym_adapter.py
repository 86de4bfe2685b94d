"""Drive a gymnasium environment as the robot: ``sense`` and ``act`` callables for the control loop.

Env ids: ``metaworld:<task>`` (Meta-World goal-observable task with a fresh random layout every episode,
success = info["success"], episode ends on success or after max_path_length = 500 steps) or ``gym:<id>`` (any
registered gymnasium id, e.g. ``gym:Pendulum-v1``). gymnasium and metaworld are the ``sim`` extra, imported
only here and only when an adapter is made.

The adapter owns the environment side of the step contract: it feeds the reward of the previous action
(``prev_reward``), marks episode starts (``first``), and leaves return-to-go to the policy's bookkeeping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .control_loop import Reading, StopLoop


@dataclass
class Episode:
    index: int
    steps: int
    ret: float
    success: bool


def make_env(env_id: str, seed: int | None = None):
    """Returns (env, max_steps or None, terminate_on_success)."""
    kind, _, name = env_id.partition(":")
    try:
        import gymnasium as gym
    except ImportError as e:
        raise RuntimeError(f"running in a simulator needs the 'sim' extra (gymnasium): {e}") from None
    if kind == "metaworld":
        try:
            import metaworld  # noqa: F401  (registers the Meta-World/* ids)
        except ImportError as e:
            raise RuntimeError(f"{env_id} needs metaworld (the 'sim' extra): {e}") from None
        env = gym.make("Meta-World/goal_observable", env_name=name, seed=seed, disable_env_checker=True)
        u = env.unwrapped
        # without these every reset would restore the same frozen layout
        u._freeze_rand_vec = False
        u.seeded_rand_vec = True
        return env, int(getattr(u, "max_path_length", 500)), True
    if kind == "gym" and name:
        return gym.make(name, disable_env_checker=True), None, False
    raise ValueError(f"unknown env id {env_id!r}: use 'metaworld:<task>' or 'gym:<gymnasium id>'")


def reset(env, seed: int | None):
    """Reset with a seed that decides the layout. Meta-World's reset() ignores its seed argument (the layout
    comes from the env's np_random), so it is seeded through the unwrapped env."""
    u = env.unwrapped
    if seed is not None and hasattr(u, "seeded_rand_vec"):
        u.seed(int(seed))
        obs, _ = env.reset()
    else:
        obs, _ = env.reset(seed=seed)
    return obs


class GymAdapter:
    def __init__(self, env_id: str, episodes: int, seed: int | None = 0, on_episode=None):
        self.env_id = env_id
        self.env, self.max_steps, self.stop_on_success = make_env(env_id, seed)
        self.episodes = int(episodes)
        self.seed = seed
        self.on_episode = on_episode
        space = self.env.action_space
        self._discrete = not hasattr(space, "low")
        self._low = None if self._discrete else space.low
        self._high = None if self._discrete else space.high
        self.results: list[Episode] = []
        self._obs = None
        self._need_reset = True
        self._prev_reward = 0.0
        self._steps = 0
        self._ret = 0.0
        self._success = False

    # -- the two callables the control loop drives ---------------------------------------------------------
    def sense(self) -> Reading:
        first = self._need_reset
        if first:
            if len(self.results) >= self.episodes:
                raise StopLoop()
            # episode i is reset with seed + i: a run is reproducible, and the same seeds give the same layouts
            # as `lram evaluate --seed0` (the PyTorch side), so the two can be compared episode by episode
            obs = reset(self.env, None if self.seed is None else self.seed + len(self.results))
            self._obs, self._need_reset = obs, False
            self._prev_reward, self._steps, self._ret, self._success = 0.0, 0, 0.0, False
        obs = np.asarray(self._obs, dtype=np.float32).reshape(1, -1)
        return Reading(obs=obs, prev_reward=np.float32(self._prev_reward), first=first)

    def act(self, action: np.ndarray) -> None:
        a = action[0]
        if self._discrete:
            a = int(a)
        else:
            a = np.clip(np.asarray(a, np.float32).reshape(self._low.shape), self._low, self._high)
        obs, reward, terminated, truncated, info = self.env.step(a)
        self._obs, self._prev_reward = obs, float(reward)
        self._steps += 1
        self._ret += float(reward)
        self._success = self._success or bool(info.get("success", False))
        done = terminated or truncated or (self.stop_on_success and self._success)
        if self.max_steps is not None and self._steps >= self.max_steps:
            done = True
        if done:
            ep = Episode(len(self.results), self._steps, self._ret, self._success)
            self.results.append(ep)
            self._need_reset = True
            if self.on_episode is not None:
                self.on_episode(ep)

    # -- summary ------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        n = len(self.results)
        return {"env": self.env_id, "episodes": n,
                "success_rate": (sum(e.success for e in self.results) / n) if n else None,
                "mean_return": float(np.mean([e.ret for e in self.results])) if n else None,
                "mean_length": float(np.mean([e.steps for e in self.results])) if n else None,
                "per_episode": [vars(e) for e in self.results]}

    def close(self) -> None:
        self.env.close()
