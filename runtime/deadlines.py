"""Fixed-rate release times with absolute deadlines.

Tick k is released at ``start + k * period`` (never ``last + period``: sleeping "one period after the last
tick" accumulates every wake-up delay into drift). A tick that overruns does not cause a burst of catch-up
ticks: releases whose whole period has already passed are skipped and counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Schedule:
    period: float
    start: float

    def release(self, k: int) -> float:
        return self.start + k * self.period

    def deadline(self, k: int) -> float:
        return self.start + (k + 1) * self.period

    def next_tick(self, k: int, now: float) -> tuple[int, int]:
        """After tick ``k`` ended at ``now``: the index of the next tick to run and how many were skipped.

        The next tick is k+1 unless ``now`` is already past the end of its period; then it is the tick whose
        period contains ``now`` (started late, within its period).
        """
        j = k + 1
        current = math.floor((now - self.start) / self.period + 1e-9)
        if current > j:
            return current, current - j
        return j, 0
