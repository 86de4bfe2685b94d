"""Return-to-go bookkeeping: target return minus the rewards collected so far, per robot.

The model is conditioned on the return it should still collect. A robot that does not compute this itself
can let the policy do it: the target defaults to the manifest's target_return.
"""
from __future__ import annotations

import numpy as np


class ReturnTracker:
    def __init__(self, n: int, target: float):
        self.n = int(n)
        self.target = np.full(self.n, float(target), dtype=np.float64)
        self.collected = np.zeros(self.n, dtype=np.float64)

    def observe(self, prev_reward: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Account for the reward of the previous action and return this step's rtg [N, 1] float32.

        At an episode start the sum restarts and the previous reward belongs to the old episode. Non-finite
        rewards are not added (the step carrying them is rejected anyway); one bad sensor reading must not
        make every later return-to-go NaN.
        """
        r = np.asarray(prev_reward, dtype=np.float64).reshape(self.n)
        self.collected[first] = 0.0
        add = ~first & np.isfinite(r)
        self.collected[add] += r[add]
        return (self.target - self.collected).astype(np.float32).reshape(self.n, 1)

    def reset(self, slot: int, target: float | None = None) -> None:
        self.collected[slot] = 0.0
        if target is not None:
            self.target[slot] = float(target)

    def state(self) -> dict:
        return {"target": self.target.copy(), "collected": self.collected.copy()}

    def load(self, d: dict) -> None:
        self.target = d["target"].copy()
        self.collected = d["collected"].copy()
