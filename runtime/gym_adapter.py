"""Drive a simulator (runtime/sim.py: Meta-World, Pendulum, any gymnasium id) as the robot: ``sense`` and
``act`` callables for the control loop.

The adapter owns the environment side of the step contract: it feeds the reward of the previous action
(``prev_reward``), marks episode starts (``first``, which the policy answers by resetting that robot), and
leaves return-to-go to the policy's bookkeeping. Episode i is reset with seed + i: a run is reproducible, and
the same seeds give the same layouts as ``lram evaluate --seed0`` (the PyTorch side, through the same sim
code), so the two can be compared episode by episode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .control_loop import Reading, StopLoop
from .sim import make_sim


@dataclass
class Episode:
    index: int
    steps: int
    ret: float
    success: bool | None  # None where the task defines no success


class GymAdapter:
    def __init__(self, env_id: str, episodes: int, seed: int = 0, on_episode=None):
        self.env_id = env_id
        self.env = make_sim(env_id, seed)
        self.episodes = int(episodes)
        self.seed = int(seed)
        self.on_episode = on_episode
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
            obs = self.env.reset(self.seed + len(self.results))
            self._obs, self._need_reset = obs, False
            self._prev_reward, self._steps, self._ret, self._success = 0.0, 0, 0.0, False
        obs = np.asarray(self._obs, dtype=np.float32).reshape(1, -1)
        return Reading(obs=obs, prev_reward=np.float32(self._prev_reward), first=first)

    def act(self, action: np.ndarray) -> None:
        res = self.env.step(action[0])
        self._obs, self._prev_reward = res.obs, res.reward
        self._steps += 1
        self._ret += res.reward
        self._success = res.success
        if res.done:
            ep = Episode(len(self.results), self._steps, self._ret, self._success)
            self.results.append(ep)
            self._need_reset = True
            if self.on_episode is not None:
                self.on_episode(ep)

    # -- summary ------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        n = len(self.results)
        judged = [e.success for e in self.results if e.success is not None]
        return {"env": self.env_id, "episodes": n,
                "success_rate": (sum(judged) / len(judged)) if judged else None,
                "mean_return": float(np.mean([e.ret for e in self.results])) if n else None,
                "mean_length": float(np.mean([e.steps for e in self.results])) if n else None,
                "per_episode": [vars(e) for e in self.results]}

    def close(self) -> None:
        self.env.close()
