"""The recurrent state of N robots: one slot (row) per robot, one numpy array per state tensor.

This is the only place that state is created, reset, committed and copied, so that "robot i's state did
not change" is a property of one small file.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


@dataclass
class Snapshot:
    """A deep copy of every slot; restoring it makes the policy continue bit-identically."""

    state: dict  # name -> array [N, ...]
    pending_first: np.ndarray  # [N] bool
    extra: dict  # other per-robot bookkeeping (returns, last actions), owned by whoever saved it


def robot_count(n) -> int:
    """``n`` as a robot count, or a clear ValueError (a bool or 2.5 is not a count; 0 robots is no policy)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or int(n) < 1:
        raise ValueError(f"n_robots must be a positive integer, got {n!r}")
    return int(n)


class Slots:
    def __init__(self, state_specs, n: int):
        self.n = robot_count(n)
        self.specs = list(state_specs)
        self.state = {s.name: np.zeros((self.n, *s.shape), dtype=s.dtype) for s in self.specs}
        # A slot that was reset, or whose episode-start step was rejected, must send first=True on its next
        # accepted step: the graph then zeroes the state itself and skips the (meaningless) reward token.
        self.pending_first = np.ones(self.n, dtype=bool)

    def feeds(self) -> dict:
        return {s.input: self.state[s.name] for s in self.specs}

    def first_flags(self, first: np.ndarray) -> np.ndarray:
        """The first flags to feed: the caller's, plus rows whose episode start has not been accepted yet.
        Changes nothing (``commit`` and ``remember_starts`` do)."""
        return self.pending_first | first

    def index(self, slot) -> int:
        """``slot`` as a row index, or TypeError/IndexError: ``True`` is not robot 1, and -1 is not the last."""
        if isinstance(slot, (bool, np.bool_)) or not isinstance(slot, numbers.Integral):
            raise TypeError(f"slot must be an integer robot index, got {slot!r}")
        if not 0 <= slot < self.n:
            raise IndexError(f"slot {slot} out of range for {self.n} robots")
        return int(slot)

    def reset(self, slot: int) -> None:
        """Zero one robot's state; the other rows are not touched (not even rewritten)."""
        slot = self.index(slot)
        for arr in self.state.values():
            arr[slot] = 0
        self.pending_first[slot] = True

    def reset_all(self) -> None:
        for arr in self.state.values():
            arr[...] = 0
        self.pending_first[:] = True

    def remember_starts(self, first: np.ndarray) -> None:
        """An announced episode start outlives a refused or failed step: the next accepted step starts it."""
        self.pending_first |= first

    def commit(self, outputs: dict, ok: np.ndarray, first: np.ndarray) -> None:
        """Take the new state for the rows in ``ok``; the other rows keep their old state exactly (and keep
        an episode start they announced with ``first``)."""
        if ok.all():
            # the common case: adopt the backend's fresh arrays instead of copying (they are not reused by it)
            for s in self.specs:
                out = outputs[s.output]
                self.state[s.name] = out if out.dtype == s.dtype and out.flags.c_contiguous else np.ascontiguousarray(out, s.dtype)
        else:
            for s in self.specs:
                self.state[s.name][ok] = outputs[s.output][ok]
        self.pending_first |= first
        self.pending_first[ok] = False

    def snapshot(self, extra: dict | None = None) -> Snapshot:
        return Snapshot({k: v.copy() for k, v in self.state.items()}, self.pending_first.copy(), dict(extra or {}))

    def check(self, snap) -> None:
        """Raise ValueError unless ``snap`` fits these slots exactly (names, shapes, dtypes)."""
        if not isinstance(snap, Snapshot) or not isinstance(snap.state, dict):
            raise ValueError(f"not a snapshot: {type(snap).__name__}")
        unknown = sorted(set(snap.state) - {s.name for s in self.specs})
        if unknown:
            raise ValueError(f"snapshot does not fit: unknown state {unknown}")
        for s in self.specs:
            arr = snap.state.get(s.name)
            want = (self.n, *s.shape)
            if not isinstance(arr, np.ndarray) or arr.shape != want or arr.dtype != np.dtype(s.dtype):
                got = "missing" if arr is None else f"{getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}"
                raise ValueError(f"snapshot does not fit: state '{s.name}' is {got}, expected {s.dtype} {want}")
        pf = snap.pending_first
        if not isinstance(pf, np.ndarray) or pf.dtype != np.bool_ or pf.shape != (self.n,):
            raise ValueError(f"snapshot does not fit: pending_first is {getattr(pf, 'dtype', type(pf).__name__)} "
                             f"{getattr(pf, 'shape', '')}, expected bool ({self.n},)")

    def restore(self, snap: Snapshot) -> None:
        self.check(snap)
        self.state = {s.name: snap.state[s.name].copy() for s in self.specs}
        self.pending_first = snap.pending_first.copy()
