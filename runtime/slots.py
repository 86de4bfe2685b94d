"""The recurrent state of N robots: one slot (row) per robot, one numpy array per state tensor.

This is the only place that state is created, reset, committed and copied, so that "robot i's state did
not change" is a property of one small file.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Snapshot:
    """A deep copy of every slot; restoring it makes the policy continue bit-identically."""

    state: dict  # name -> array [N, ...]
    pending_first: np.ndarray  # [N] bool
    extra: dict  # other per-robot bookkeeping (returns, last actions), owned by whoever saved it


class Slots:
    def __init__(self, state_specs, n: int):
        self.n = int(n)
        self.specs = list(state_specs)
        self.state = {s.name: np.zeros((self.n, *s.shape), dtype=s.dtype) for s in self.specs}
        # A slot that was reset, or whose episode-start step was rejected, must send first=True on its next
        # accepted step: the graph then zeroes the state itself and skips the (meaningless) reward token.
        self.pending_first = np.ones(self.n, dtype=bool)

    def feeds(self) -> dict:
        return {s.input: self.state[s.name] for s in self.specs}

    def first_flags(self, first: np.ndarray) -> np.ndarray:
        """The first flags to feed: the caller's, plus rows whose episode start has not been accepted yet."""
        self.pending_first |= first
        return self.pending_first.copy()

    def reset(self, slot: int) -> None:
        """Zero one robot's state; the other rows are not touched (not even rewritten)."""
        if not 0 <= slot < self.n:
            raise IndexError(f"slot {slot} out of range for {self.n} robots")
        for arr in self.state.values():
            arr[slot] = 0
        self.pending_first[slot] = True

    def reset_all(self) -> None:
        for arr in self.state.values():
            arr[...] = 0
        self.pending_first[:] = True

    def commit(self, outputs: dict, ok: np.ndarray) -> None:
        """Take the new state for the rows in ``ok``; the other rows keep their old state exactly."""
        if ok.all():
            # the common case: adopt the backend's fresh arrays instead of copying (they are not reused by it)
            for s in self.specs:
                out = outputs[s.output]
                self.state[s.name] = out if out.dtype == s.dtype and out.flags.c_contiguous else np.ascontiguousarray(out, s.dtype)
        else:
            for s in self.specs:
                self.state[s.name][ok] = outputs[s.output][ok]
        self.pending_first[ok] = False

    def snapshot(self, extra: dict | None = None) -> Snapshot:
        return Snapshot({k: v.copy() for k, v in self.state.items()}, self.pending_first.copy(), dict(extra or {}))

    def restore(self, snap: Snapshot) -> None:
        for s in self.specs:
            arr = snap.state.get(s.name)
            if arr is None or arr.shape != (self.n, *s.shape):
                raise ValueError(f"snapshot does not fit: state '{s.name}' is {None if arr is None else arr.shape}, "
                                 f"expected {(self.n, *s.shape)}")
        self.state = {k: v.copy() for k, v in snap.state.items()}
        self.pending_first = snap.pending_first.copy()
