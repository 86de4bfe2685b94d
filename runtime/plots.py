"""PNG plots of a control-loop run: a latency histogram and a per-tick timeline.

matplotlib is imported here, lazily, with the Agg backend: a robot has no display, and a runtime that only
runs policies should not pay for matplotlib's import.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(log, period_s: float, out_dir: str | Path, title: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = log.arrays()
    if a["tick"].size == 0:
        return []
    ms = {k: a[k] * 1e3 for k in ("sense", "infer", "act")}
    total = ms["sense"] + ms["infer"] + ms["act"]
    period_ms = period_s * 1e3
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4))
    hi = max(float(total.max()), period_ms) * 1.05
    bins = np.linspace(0, hi, 60)
    for name, v in (("infer", ms["infer"]), ("total", total)):
        ax.hist(v, bins=bins, alpha=0.6, label=f"{name} (p99 {np.percentile(v, 99):.2f} ms)")
    ax.axvline(period_ms, color="red", ls="--", label=f"period {period_ms:.1f} ms")
    ax.set_xlabel("latency [ms]"); ax.set_ylabel("ticks"); ax.set_yscale("log")
    ax.set_title(f"latency per tick {title}".strip()); ax.legend()
    fig.tight_layout(); p = out / "latency_hist.png"; fig.savefig(p, dpi=100); plt.close(fig); paths.append(p)

    fig, ax = plt.subplots(figsize=(10, 4))
    t = a["tick"]
    ax.stackplot(t, ms["sense"], ms["infer"], ms["act"], labels=["sense", "infer", "act"], alpha=0.8)
    late = (a["start"] - a["release"]) * 1e3
    ax.plot(t, late, color="black", lw=0.6, label="start lateness")
    miss = a["status"] != "ok"
    if miss.any():
        ax.scatter(t[miss], total[miss], color="red", s=10, zorder=3, label="miss (safe action)")
    ax.axhline(period_ms, color="red", ls="--", lw=0.8, label="period")
    ax.set_xlabel("tick"); ax.set_ylabel("ms"); ax.set_title(f"timeline {title}".strip()); ax.legend(loc="upper right")
    fig.tight_layout(); p = out / "timeline.png"; fig.savefig(p, dpi=100); plt.close(fig); paths.append(p)
    return paths
