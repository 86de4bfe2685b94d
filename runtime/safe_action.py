"""The action sent when the model gives none in time (timeout, backend error, rejected input).

"hold" repeats each robot's last good action (smooth for position-controlled arms), "zero" sends the neutral
action (zero velocity/torque, clipped into the bounds), "stop" sends the neutral action and tells the loop to
end. Before any good action exists, "hold" falls back to the neutral action.
"""
from __future__ import annotations

import numpy as np

MISS_POLICIES = ("hold", "zero", "stop")


def neutral_action(action_spec: dict, n: int) -> np.ndarray:
    if action_spec.get("kind") == "discrete":
        return np.zeros(n, dtype=np.int64)  # action 0 is NOOP in the ALE/Procgen sets the paper uses
    shape = tuple(action_spec["shape"])
    zero = np.zeros((n, *shape), dtype=np.float32)
    lo, hi = action_spec.get("low"), action_spec.get("high")
    if lo is not None and hi is not None:
        zero = np.clip(zero, np.asarray(lo, np.float32), np.asarray(hi, np.float32))
    return zero


class SafeAction:
    def __init__(self, policy: str, action_spec: dict, n: int):
        if policy not in MISS_POLICIES:
            raise ValueError(f"unknown miss policy {policy!r}; choose one of {', '.join(MISS_POLICIES)}")
        self.policy = policy
        self.neutral = neutral_action(action_spec, n)
        self.last = self.neutral.copy()

    @property
    def stops(self) -> bool:
        return self.policy == "stop"

    def remember(self, action: np.ndarray, ok: np.ndarray, all_ok: bool = False) -> None:
        if all_ok:
            np.copyto(self.last, action)
        else:
            self.last[ok] = action[ok]

    def fill(self, action: np.ndarray | None, ok: np.ndarray) -> np.ndarray:
        """``action`` with the rows not in ``ok`` replaced by the safe action (a new array)."""
        safe = self.last if self.policy == "hold" else self.neutral
        if action is None:
            return safe.copy()
        return np.where(ok.reshape((-1,) + (1,) * (action.ndim - 1)), action, safe).astype(action.dtype, copy=False)

    def reset(self, slot: int) -> None:
        self.last[slot] = self.neutral[slot]
