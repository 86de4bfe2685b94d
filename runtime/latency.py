"""Latency statistics in milliseconds: percentiles and jitter over a run's per-tick timings."""
from __future__ import annotations

import numpy as np


def summarize(seconds) -> dict:
    x = np.asarray(seconds, dtype=np.float64) * 1e3
    if x.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {"count": int(x.size), "mean_ms": float(x.mean()), "p50_ms": float(p50), "p95_ms": float(p95),
            "p99_ms": float(p99), "max_ms": float(x.max()), "min_ms": float(x.min()), "std_ms": float(x.std())}


def jitter(starts, releases, period: float, ticks=None) -> dict:
    """Two views of timing noise: how late each tick started against its release time, and how far the
    intervals between consecutive tick starts strayed from the period (only between adjacent ticks)."""
    starts = np.asarray(starts, np.float64)
    releases = np.asarray(releases, np.float64)
    out = {"start_lateness": summarize(starts - releases)}
    if starts.size > 1:
        adjacent = np.ones(starts.size - 1, bool) if ticks is None else np.diff(np.asarray(ticks)) == 1
        dev = (np.diff(starts)[adjacent] - period) * 1e3
    if starts.size > 1 and dev.size:
        out["interval_deviation_ms"] = {"std": float(dev.std()), "max_abs": float(np.abs(dev).max())}
    return out
