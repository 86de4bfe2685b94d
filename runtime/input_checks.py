"""Validate one step's inputs before they reach the graph.

A NaN observation fed to a recurrent model does not cost one bad action: it poisons the state and every
action after it. So a bad row is rejected *before* the graph runs, its robot's state is left as it was, and
the caller gets a reason per robot. Shape, dtype and flag errors concern the whole batch; NaN/Inf and
out-of-range values concern single robots, so the others still step.

Every number that reaches the graph passes here, including the return-to-go the policy computes itself, and
values are checked in the dtype they were given in (a float64 1e300 is out of range, not "Inf after the
cast"). Flags are validated, never cast: ``bool("no")`` is True, and a flag of 2 or NaN must not wipe a
robot's memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rejection:
    slot: int
    kind: str  # "shape" | "dtype" | "flag" | "nonfinite" | "range" | "output"
    reason: str


class InputRejected(ValueError):
    """Raised by ``Policy.step(strict=True)``; carries one Rejection per refused robot."""

    def __init__(self, rejections: list[Rejection]):
        self.rejections = rejections
        super().__init__("; ".join(f"robot {r.slot}: {r.reason}" for r in rejections[:4]) + (" ..." if len(rejections) > 4 else ""))


F32_MAX = float(np.finfo(np.float32).max)


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
    rtg: np.ndarray  # [N, 1] float32
    prev_reward: np.ndarray  # [N, 1] float32
    first: np.ndarray  # [N] bool, the caller's episode starts (all False when the flags themselves are bad)
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
        # the largest magnitude the graph's obs dtype holds: a finite value beyond it would arrive as Inf
        self.limit = float(np.finfo(self.dtype).max) if np.issubdtype(self.dtype, np.floating) else None
        # A graph whose obs input is wider than the observation (e.g. 204, the paper's padded width) gets zeros
        # appended here; a graph that pads internally declares the observation's own width.
        self.graph_shape = self.shape
        if graph_obs_shape is not None and self.kind == "state":
            tail = graph_obs_shape[1:]
            if len(tail) == 1 and isinstance(tail[0], int) and tail[0] > self.shape[-1]:
                self.graph_shape = (tail[0],)

    def _all(self, kind, reason):
        return {i: Rejection(i, kind, reason) for i in range(self.n)}

    def check(self, obs, rtg, prev_reward, first, rtg_for=None) -> CheckedStep:
        """``rtg=None`` asks ``rtg_for(first [N] bool, prev_reward [N, 1] float64)`` for the return-to-go (the
        policy's own bookkeeping); what it returns is checked exactly like a caller's rtg."""
        n = self.n
        rejected: dict = {}
        rtg_a = rew_a = None
        first_a = flags(first, n)
        if isinstance(first_a, str):
            rejected, first_a = self._all("flag", first_a), np.zeros(n, dtype=bool)
        else:
            rew_a = numbers(prev_reward, n, "prev_reward")
            if not isinstance(rew_a, str):
                rtg_a = numbers(rtg, n, "rtg") if rtg is not None else rtg_for(first_a, rew_a)
            bad = next((v for v in (rew_a, rtg_a) if isinstance(v, str)), None)
            obs = np.asarray(obs)
            if bad is not None:
                rejected = self._all("dtype" if "numbers" in bad else "shape", bad)
            elif obs.shape != (n,) + self.shape:
                rejected = self._all("shape", f"observation shape {obs.shape}, expected {(n,) + self.shape}")
            elif not self._dtype_ok(obs.dtype):
                want = "a floating dtype" if self.kind == "state" else str(self.dtype)
                rejected = self._all("dtype", f"observation dtype {obs.dtype}, expected {want}")
        if rejected:
            zeros = np.zeros((n, 1), np.float32)
            return CheckedStep(np.zeros((n,) + self.graph_shape, self.dtype), zeros, zeros, first_a, rejected,
                               np.zeros(n, bool))

        # every value is judged in the dtype it came in; only then is it cast to what the graph takes
        x = obs.reshape(n, -1)
        scalars = np.concatenate([rtg_a, rew_a], axis=1)
        finite = np.isfinite(scalars).all(axis=1)
        # a finite float32 always fits; float64 (the policy's own rtg, a caller's doubles) may not
        fits = True if scalars.dtype == np.float32 else (np.abs(scalars) <= F32_MAX).all(axis=1)
        inside = None
        if self.kind == "state":
            finite &= np.isfinite(x).all(axis=1)
            lo = self.low if self.low is not None else -np.inf
            hi = self.high if self.high is not None else np.inf
            if self.low is not None or self.high is not None:
                inside = ((x >= lo) & (x <= hi)).all(axis=1)
            if x.dtype != self.dtype and np.finfo(x.dtype).max > self.limit:
                big = (np.abs(x) <= self.limit).all(axis=1)
                inside = big if inside is None else inside & big
        ok = finite & fits if inside is None else finite & fits & inside
        if ok.all():
            # the common case, kept cheap: nothing to explain and nothing to zero
            if self.graph_shape == self.shape:
                clean = np.ascontiguousarray(x, dtype=self.dtype).reshape((n,) + self.shape)
            else:
                clean = np.zeros((n,) + self.graph_shape, self.dtype)
                clean[:, : x.shape[1]] = x
            return CheckedStep(clean, _f32(rtg_a), _f32(rew_a), first_a, rejected, ok)

        for i in np.flatnonzero(~ok):
            i = int(i)
            names = (("observation", x[i]), ("rtg", rtg_a[i]), ("prev_reward", rew_a[i]))
            what = [name for name, v in names if not np.isfinite(v).all()]
            if what:
                rejected[i] = Rejection(i, "nonfinite", f"NaN/Inf in {', '.join(what)}")
                continue
            what = [name for name, v in names[1:] if not (np.abs(v) <= F32_MAX).all()]
            if what:
                rejected[i] = Rejection(i, "range", f"{', '.join(what)} beyond the float32 range (|x| > {F32_MAX:.3g})")
                continue
            out = (x[i] < lo) | (x[i] > hi)
            if self.limit is not None:
                out |= np.abs(x[i]) > self.limit
            rejected[i] = Rejection(i, "range", f"observation out of range in dims {np.flatnonzero(out)[:8].tolist()}")
        clean = np.zeros((n,) + self.graph_shape, dtype=self.dtype)
        clean.reshape(n, -1)[ok, : x.shape[1]] = x[ok]
        rtg_a = np.where(ok[:, None], rtg_a, 0).astype(np.float32)
        rew_a = np.where(ok[:, None], rew_a, 0).astype(np.float32)
        return CheckedStep(clean, rtg_a, rew_a, first_a, rejected, ok)

    def _dtype_ok(self, dtype) -> bool:
        if dtype == self.dtype:
            return True
        if self.kind == "state":
            return np.issubdtype(dtype, np.floating)
        return dtype == self.dtype


def _f32(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.float32 else a.astype(np.float32)


def flags(values, n):
    """One episode-start flag per robot as [n] bool, or the reason why ``values`` are not flags.

    Accepted: Python/numpy bools, bool arrays, and integers that are 0 or 1 (ROS messages and C callers carry
    flags as uint8). Everything else (floats, NaN, 2, -1, strings, None) is refused, not cast.
    """
    if isinstance(values, (bool, np.bool_)):
        return np.full(n, bool(values))
    if type(values) is np.ndarray and values.dtype == np.bool_ and values.shape == (n,):
        return values
    what = f"first must be one bool (or a 0/1 integer) per robot ({n}), or one for all"
    try:
        a = np.asarray(values)
    except (TypeError, ValueError):
        return f"{what}; got {type(values).__name__}"
    if a.dtype != np.bool_:
        if not np.issubdtype(a.dtype, np.integer):
            return f"{what}; got {a.dtype} values {np.ravel(a)[:4].tolist()}"
        if ((a != 0) & (a != 1)).any():
            return f"{what}; got the integers {np.unique(a)[:4].tolist()}"
        a = a.astype(bool)
    if a.size == n:  # [n] or a column [n, 1], like rtg and prev_reward
        return a.reshape(n)
    if a.size == 1:
        return np.full(n, bool(a.reshape(())))
    return f"{what}; got {a.size} values"


def numbers(values, n, name):
    """One real number per robot as [n, 1] in its own float dtype (float32 stays float32; integers and
    float64 become float64, so that range is judged before any cast), or the reason why not."""
    if type(values) is np.ndarray and values.dtype == np.float32 and values.size == n:
        return values.reshape(n, 1)
    if isinstance(values, (float, np.float32, np.float64)):  # one value for all robots
        return np.full((n, 1), values, np.float32 if isinstance(values, np.float32) else np.float64)
    try:
        a = np.asarray(values)
    except (TypeError, ValueError):
        return f"{name} must be numbers; got {type(values).__name__}"
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        return f"{name} must be numbers; got {a.dtype} values {np.ravel(a)[:4].tolist()}"
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    if a.size == 1 and n != 1:
        return np.full((n, 1), a.reshape(()), a.dtype)
    if a.size != n:
        return f"{name} must have one value per robot ({n}), or one for all; got {a.size}"
    return a.reshape(n, 1)
