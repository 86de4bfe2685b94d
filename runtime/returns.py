"""Return-to-go bookkeeping: target return minus the rewards collected so far, per robot.

The model is conditioned on the return it should still collect. A robot that does not compute this itself
can let the policy do it: the target defaults to the manifest's target_return.

The tracker proposes and the policy commits: ``propose`` computes this step's rtg without changing anything,
the policy runs it through the same input checks as a caller's rtg, and ``commit`` keeps the new sums only
for the rows whose step was accepted. So a refused row, a refused batch or a failed backend call counts no
reward, and a caller that retries a tick never counts its reward twice.
"""
from __future__ import annotations

import numbers

import numpy as np

from .input_checks import F32_MAX


def check_target(value, where: str = "target_return") -> float:
    """A target return as a float, or a clear ValueError: it is fed to the graph (minus the rewards so far)
    on every step, so NaN, Inf or a value float32 cannot hold would poison every step of the episode."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or abs(v) > F32_MAX:
        raise ValueError(f"{where} must be a finite number within the float32 range, got {v!r}")
    return v


class ReturnTracker:
    def __init__(self, n: int, target: float):
        self.n = int(n)
        self.target = np.full(self.n, check_target(target), dtype=np.float64)
        self.collected = np.zeros(self.n, dtype=np.float64)

    def propose(self, prev_reward: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This step's rtg [N, 1] float64 and the sums to commit if the step is accepted; changes nothing.

        ``first`` must be the flags the graph sees (the caller's and the policy's pending episode starts): at
        an episode start the sum restarts and the previous reward, which belongs to the old episode and which
        the graph skips, is not counted.
        """
        r = np.asarray(prev_reward, dtype=np.float64).reshape(self.n)
        # a NaN/Inf reward refuses its row anyway; kept out of the rtg so the refusal names the reward alone
        r = np.where(np.isfinite(r), r, 0.0)
        with np.errstate(over="ignore"):
            collected = np.where(first, 0.0, self.collected + r)
            return (self.target - collected).reshape(self.n, 1), collected

    def commit(self, collected: np.ndarray, ok: np.ndarray) -> None:
        if ok.all():
            self.collected = collected  # a fresh array from propose, not shared
        else:
            self.collected[ok] = collected[ok]

    def reset(self, slot: int, target: float | None = None) -> None:
        self.collected[slot] = 0.0
        if target is not None:
            self.target[slot] = check_target(target)

    def state(self) -> dict:
        return {"target": self.target.copy(), "collected": self.collected.copy()}

    def check_state(self, d) -> None:
        """Raise ValueError unless ``d`` is a state() of a tracker like this one."""
        if not isinstance(d, dict) or set(d) != {"target", "collected"}:
            raise ValueError("snapshot returns must be {'target', 'collected'}")
        for k in ("target", "collected"):
            a = d[k]
            if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.shape != (self.n,) or not np.isfinite(a).all():
                raise ValueError(f"snapshot returns '{k}' must be finite float64 of shape ({self.n},), got "
                                 f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")

    def load(self, d: dict) -> None:
        self.target = d["target"].copy()
        self.collected = d["collected"].copy()
