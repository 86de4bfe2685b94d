"""Validate one step's inputs before they reach the graph.

A NaN observation fed to a recurrent model does not cost one bad action: it poisons the state and every
action after it. So a bad row is rejected *before* the graph runs, its robot's state is left as it was, and
the caller gets a reason per robot. Shape and dtype errors concern the whole batch; NaN/Inf and
out-of-range values concern single robots, so the others still step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rejection:
    slot: int
    kind: str  # "shape" | "dtype" | "nonfinite" | "range"
    reason: str


class InputRejected(ValueError):
    """Raised by ``Policy.step(strict=True)``; carries one Rejection per refused robot."""

    def __init__(self, rejections: list[Rejection]):
        self.rejections = rejections
        super().__init__("; ".join(f"robot {r.slot}: {r.reason}" for r in rejections[:4]) + (" ..." if len(rejections) > 4 else ""))


def _bounds(values, size, fill):
    if values is None:
        return None
    arr = np.array([fill if v is None else v for v in np.ravel(values).tolist()], dtype=np.float64)
    if arr.size == 1 and size != 1:
        arr = np.full(size, arr[0])
    return arr.reshape(size)


@dataclass
class CheckedStep:
    """Inputs ready for the graph (bad rows replaced by zeros so nothing non-finite enters it) plus the verdict."""

    obs: np.ndarray
    rtg: np.ndarray
    prev_reward: np.ndarray
    first: np.ndarray
    rejected: dict  # slot -> Rejection
    ok: np.ndarray  # [N] bool, False for rejected rows


class InputChecker:
    """Built once from the manifest's observation spec (and the graph's obs width, for zero-padding)."""

    def __init__(self, observation: dict, n: int, graph_obs_shape: list | None = None):
        self.n = n
        self.kind = observation.get("kind", "state")
        self.shape = tuple(int(s) for s in observation["shape"])
        self.dtype = np.dtype(observation.get("dtype", "float32" if self.kind == "state" else "uint8"))
        size = int(np.prod(self.shape))
        self.low = _bounds(observation.get("low"), size, -np.inf)
        self.high = _bounds(observation.get("high"), size, np.inf)
        # A graph whose obs input is wider than the observation (e.g. 204, the paper's padded width) gets zeros
        # appended here; a graph that pads internally declares the observation's own width.
        self.graph_shape = self.shape
        if graph_obs_shape is not None and self.kind == "state":
            tail = graph_obs_shape[1:]
            if len(tail) == 1 and isinstance(tail[0], int) and tail[0] > self.shape[-1]:
                self.graph_shape = (tail[0],)

    def _all(self, kind, reason):
        return {i: Rejection(i, kind, reason) for i in range(self.n)}

    def check(self, obs, rtg, prev_reward, first) -> CheckedStep:
        n = self.n
        rejected: dict = {}
        first_a = _flags(first, n)
        rtg_a = column(rtg, n)
        rew_a = column(prev_reward, n)
        obs = np.asarray(obs)
        if first_a is None:
            first_a = np.zeros(n, dtype=bool)
            rejected = self._all("shape", f"first has {np.size(first)} values for {n} robots")
        elif rtg_a is None or rew_a is None:
            which = "rtg" if rtg_a is None else "prev_reward"
            rejected = self._all("shape", f"{which} must have one value per robot ({n})")
        elif obs.shape != (n,) + self.shape:
            rejected = self._all("shape", f"observation shape {obs.shape}, expected {(n,) + self.shape}")
        elif not self._dtype_ok(obs.dtype):
            want = "a floating dtype" if self.kind == "state" else str(self.dtype)
            rejected = self._all("dtype", f"observation dtype {obs.dtype}, expected {want}")
        if rejected:
            zeros = np.zeros((n, 1), np.float32)
            return CheckedStep(np.zeros((n,) + self.graph_shape, self.dtype), zeros, zeros, first_a, rejected,
                               np.zeros(n, bool))

        x = obs.astype(self.dtype, copy=False).reshape(n, -1)
        good = np.isfinite(rtg_a[:, 0]) & np.isfinite(rew_a[:, 0])
        if self.kind == "state":
            good &= np.isfinite(x).all(axis=1)
            if self.low is not None or self.high is not None:
                lo = self.low if self.low is not None else -np.inf
                hi = self.high if self.high is not None else np.inf
                inside = ((x >= lo) & (x <= hi)).all(axis=1)
            else:
                inside = None
        if good.all() and (self.kind != "state" or inside is None or inside.all()):
            # the common case, kept cheap: nothing to explain and nothing to zero
            if self.graph_shape == self.shape:
                clean = np.ascontiguousarray(x).reshape((n,) + self.shape)
            else:
                clean = np.zeros((n,) + self.graph_shape, self.dtype)
                clean[:, : x.shape[1]] = x
            return CheckedStep(clean, rtg_a, rew_a, first_a, rejected, good)

        for i in np.flatnonzero(~good):
            what = [name for name, v in (("observation", x[i]), ("rtg", rtg_a[i]), ("prev_reward", rew_a[i]))
                    if not np.isfinite(v).all()]
            rejected[int(i)] = Rejection(int(i), "nonfinite", f"NaN/Inf in {', '.join(what)}")
        if self.kind == "state" and inside is not None:
            for i in np.flatnonzero(~inside & good):
                dims = np.flatnonzero((x[i] < lo) | (x[i] > hi))
                rejected[int(i)] = Rejection(int(i), "range", f"observation out of range in dims {dims[:8].tolist()}")
        ok = np.ones(n, dtype=bool)
        ok[list(rejected)] = False
        clean = np.zeros((n,) + self.graph_shape, dtype=self.dtype)
        clean.reshape(n, -1)[ok, : x.shape[1]] = x[ok]
        rtg_a = np.where(ok[:, None], rtg_a, 0).astype(np.float32)
        rew_a = np.where(ok[:, None], rew_a, 0).astype(np.float32)
        return CheckedStep(clean, rtg_a, rew_a, first_a, rejected, ok)

    def _dtype_ok(self, dtype) -> bool:
        if self.kind == "state":
            return np.issubdtype(dtype, np.floating)
        return dtype == self.dtype


def _flags(values, n):
    a = np.asarray(values, dtype=bool)
    if a.shape == (n,):
        return a
    if a.size == 1:
        return np.full(n, bool(a.reshape(())))
    return None


def column(values, n):
    """One float32 value per robot as [n, 1] (a scalar is broadcast), or None when it does not fit."""
    try:
        a = values if type(values) is np.ndarray and values.dtype == np.float32 else np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if a.size == 1 and n != 1:
        return np.full((n, 1), a.reshape(()), np.float32)
    if a.size != n:
        return None
    return a.reshape(n, 1)
