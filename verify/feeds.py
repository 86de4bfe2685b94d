"""The inputs both sides of a comparison are driven with, robots side by side with staggered episode resets.

- SimulatorFeed: real observations from the task's simulator, episodes driven by the reference's actions;
- AdversarialFeed: large rewards and returns, wide observations, and one long episode with no reset.
Both: ``inputs()`` -> (obs, rtg, prev_reward, first) for all robots; ``advance(actions)``; ``notes()``.
"""
from __future__ import annotations

import numpy as np

from lram.model.config import TaskSpec


class SimulatorFeed:
    """Robots in the real simulator, acting with the PyTorch policy's actions."""

    def __init__(self, env_id: str, task: TaskSpec, robots: int, seed: int):
        from lram.model.envs import make_env

        self.envs = [make_env(env_id, seed=seed + 10_000 + r)[0] for r in range(robots)]
        self.task = task
        self.target = float(task.target_return or 0.0)
        self.next_seed = seed + 20_000
        n = len(self.envs)
        self.obs = [None] * n
        self.rtg = np.zeros(n, np.float32)
        self.prev_reward = np.zeros(n, np.float32)
        self.first = np.ones(n, bool)
        self.episodes = 0
        for r in range(n):
            self._reset(r)

    def _reset(self, r: int):
        self.obs[r] = np.asarray(self.envs[r].reset(self.next_seed), np.float32)
        self.next_seed += 1
        self.rtg[r] = self.target
        self.prev_reward[r] = 0.0
        self.first[r] = True
        self.episodes += 1

    def inputs(self):
        return np.stack(self.obs).astype(np.float32), self.rtg.copy(), self.prev_reward.copy(), self.first.copy()

    def advance(self, actions):
        self.first[:] = False
        for r, env in enumerate(self.envs):
            res = env.step(actions[r])
            self.rtg[r] -= res.reward
            self.prev_reward[r] = res.reward
            self.obs[r] = res.obs
            if res.done:
                self._reset(r)

    def notes(self):
        for env in self.envs:
            env.close()
        return [f"simulator: {self.episodes} episodes"]


class AdversarialFeed:
    """Large rewards and returns, wide observations, staggered resets, and robot 0 never reset (a long episode)."""

    def __init__(self, task: TaskSpec, robots: int, rng: np.random.Generator):
        self.task, self.rng, self.n = task, rng, robots
        self.first = np.ones(robots, bool)
        self.episodes = robots
        self.t = 0

    def inputs(self):
        task, rng, n = self.task, self.rng, self.n
        if task.obs_kind == "image":
            obs = rng.integers(0, 256, size=(n, *task.obs_shape), dtype=np.uint8)
        else:
            lo = np.asarray(task.obs_low if task.obs_low else [-1.0] * task.obs_shape[0], np.float32)
            hi = np.asarray(task.obs_high if task.obs_high else [1.0] * task.obs_shape[0], np.float32)
            span = hi - lo
            obs = (lo - span + rng.random((n, task.obs_shape[0])) * 3 * span).astype(np.float32)  # 3x the range
        scale = task.reward_scale
        rtg = (rng.standard_normal(n) * 50 * scale).astype(np.float32)
        prev_reward = (rng.standard_normal(n) * 5 * scale).astype(np.float32)
        return obs, rtg, prev_reward, self.first.copy()

    def advance(self, actions):
        self.t += 1
        self.first = self.rng.random(self.n) < 1 / 300
        self.first[0] = False  # robot 0: one episode for the whole phase
        self.episodes += int(self.first.sum())

    def notes(self):
        return [f"adversarial: robot 0 ran one episode of {self.t} steps; rewards ~ 5 x scale, returns ~ 50 x scale"]
