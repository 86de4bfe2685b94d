"""What a control-loop run reports: counts, per-phase latency, jitter, events; as JSON and as text."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class TickLog:
    """Per-tick timings (seconds, from the loop's clock) kept for statistics and plots."""

    tick: list = field(default_factory=list)
    release: list = field(default_factory=list)
    start: list = field(default_factory=list)
    sense: list = field(default_factory=list)
    infer: list = field(default_factory=list)
    act: list = field(default_factory=list)
    status: list = field(default_factory=list)  # "ok" or the miss kind of that tick

    def arrays(self) -> dict:
        return {k: np.asarray(v) for k, v in asdict(self).items()}


@dataclass
class LoopReport:
    config: dict
    ticks: int = 0
    overruns: int = 0  # ticks whose sense+infer+act ended after their deadline (release + period)
    skipped_ticks: int = 0  # releases dropped because an earlier tick ran past their whole period
    misses: dict = field(default_factory=dict)  # kind -> ticks where a robot got the safe action instead of the model's
    stop_reason: str = ""
    warmup: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)  # sense/infer/act/total -> latency stats
    jitter: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # the first few miss events in detail
    events_dropped: int = 0
    extra: dict = field(default_factory=dict)  # what the caller adds (episodes, success rate)

    @property
    def missed(self) -> int:
        return sum(self.misses.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["missed"] = self.missed
        return d

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_plain))
        return path

    def format_text(self) -> str:
        c = self.config
        lines = [f"ticks {self.ticks} at {c.get('hz')} Hz ({'real time' if c.get('realtime') else 'as fast as possible'}), "
                 f"backend {c.get('backend')}, stop: {self.stop_reason}",
                 f"overruns {self.overruns}, skipped ticks {self.skipped_ticks}, misses {self.missed} "
                 + (str(dict(sorted(self.misses.items()))) if self.misses else "")]
        lines.append(f"{'phase':<8}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  ms")
        for name, s in self.phases.items():
            if s.get("count"):
                lines.append(f"{name:<8}{s['p50_ms']:9.3f}{s['p95_ms']:9.3f}{s['p99_ms']:9.3f}{s['max_ms']:9.3f}")
        late = self.jitter.get("start_lateness", {})
        if late.get("count"):
            lines.append(f"start lateness p99 {late['p99_ms']:.3f} ms, max {late['max_ms']:.3f} ms; interval deviation "
                         f"std {self.jitter.get('interval_deviation_ms', {}).get('std', 0.0):.3f} ms")
        return "\n".join(lines)


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
