"""Run a policy at a fixed rate: sense -> infer -> act on absolute deadlines, with a safe action whenever the
model has no answer in time, and an account of every tick.

Sensors and actuators are plain callables: ``sense() -> Reading`` (or a bare observation array; raise
``StopLoop`` when there is nothing more to do) and ``act(action)``. The clock and sleep are injectable so the
scheduling logic is tested with a fake clock.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .deadlines import Schedule
from .latency import jitter, summarize
from .report import LoopReport, TickLog


class StopLoop(Exception):
    """Raised by a sensor when the run is over (episodes done); not an error."""


class WarmupFailed(RuntimeError):
    """The model failed before the first tick: nothing was sent to the robot."""


@dataclass
class Reading:
    obs: np.ndarray  # [N, ...] one row per robot
    prev_reward: object = 0.0  # reward of the previous action, per robot
    first: object = False  # episode start, per robot
    rtg: object = None  # None: the policy's own return-to-go bookkeeping


@dataclass
class LoopConfig:
    """How the loop runs; recorded as is in the report."""

    hz: float = 50.0
    warmup: int = 10  # inference calls before the first tick: first calls allocate and pick kernels
    # The model's time limit per tick, in control periods (None: no limit). One period by default: later than
    # that its action is for a state that is gone.
    timeout_periods: float | None = 1.0
    realtime: bool = True  # sleep to the schedule; False: as fast as possible, deadlines still accounted
    # OS sleeps wake late (~0.1-1 ms on a loaded machine); spinning the last ``spin_ms`` before a release trades
    # that much CPU per tick for a punctual start. Off by default: it costs a core on small boards.
    spin_ms: float = 0.0
    max_events: int = 200  # miss events kept in detail

    def __post_init__(self):
        if not self.hz > 0:
            raise ValueError(f"hz must be positive, got {self.hz}")
        if self.timeout_periods is not None and not self.timeout_periods > 0:
            raise ValueError(f"timeout_periods must be positive or None, got {self.timeout_periods}")
        if self.warmup < 0 or self.spin_ms < 0:
            raise ValueError("warmup and spin_ms must not be negative")

    @property
    def period(self) -> float:
        return 1.0 / self.hz


class ControlLoop:
    """sense -> policy -> act on absolute deadlines. The loop talks only to the Policy: the policy owns the
    time limit, the miss policy and the safe action; the loop counts what happened."""

    def __init__(self, policy, sense, act, config: LoopConfig | None = None, context: dict | None = None,
                 clock=time.perf_counter, sleep=time.sleep):
        self.policy, self.sense, self.act = policy, sense, act
        self.config = cfg = config or LoopConfig()
        self.period = cfg.period
        self.clock, self.sleep = clock, sleep
        self.log = TickLog()
        self.report = LoopReport(config={**asdict(cfg), "period_ms": self.period * 1e3,
                                         "miss_policy": policy.miss_policy, "robots": policy.n,
                                         "backend": policy.backend_name, **(context or {})})

    # -- bookkeeping --------------------------------------------------------------------------------------
    def _miss(self, kind: str, tick: int, reason: str, slot: int | None = None) -> None:
        r = self.report
        r.misses[kind] = r.misses.get(kind, 0) + 1
        if len(r.events) < self.config.max_events:
            r.events.append({"tick": tick, "kind": kind, "slot": slot, "reason": reason})
        else:
            r.events_dropped += 1

    def _infer(self, reading, tick: int):
        """The action for this tick and whether every robot got the model's own action."""
        if not isinstance(reading, Reading):
            reading = Reading(np.asarray(reading), first=tick == 0)
        res = self.policy.step_detailed(reading.obs, reading.rtg, reading.prev_reward, reading.first)
        if res.failure is not None:
            self._miss(res.failure[0], tick, res.failure[1])
        for rej in res.rejected.values():
            self._miss("rejected_" + ("output" if rej.kind == "output" else "input"), tick, rej.reason, rej.slot)
        return res.action, res.failure is None and not res.rejected

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None, on_tick=None) -> LoopReport:
        """Run until ``max_steps`` ticks, the sensor raises StopLoop, the miss policy says stop, or Ctrl-C.
        Always returns the report (also after KeyboardInterrupt)."""
        r, cfg = self.report, self.config
        spin_s = cfg.spin_ms / 1e3
        log, k = self.log, 0
        previous_timeout = self.policy.timeout_s
        try:
            t = self.clock()
            try:
                self.policy.warmup(cfg.warmup)
            except Exception as e:
                r.stop_reason = "warmup_failed"
                msg = " ".join(str(e).split()) or "no message"
                raise WarmupFailed(f"warm-up failed (the model did not run; nothing was sent): {type(e).__name__}: {msg}") from e
            r.warmup = {"steps": cfg.warmup, "total_ms": (self.clock() - t) * 1e3}
            self.policy.set_timeout(None if cfg.timeout_periods is None else cfg.timeout_periods * self.period)
            sched = Schedule(self.period, self.clock())
            while max_steps is None or r.ticks < max_steps:
                release = sched.release(k)
                if cfg.realtime:
                    now = self.clock()
                    if now < release - spin_s:
                        self.sleep(release - spin_s - now)
                    if spin_s > 0:
                        while self.clock() < release:
                            pass
                t0 = self.clock()
                if not cfg.realtime:  # as fast as possible: each tick's deadline counts from its own start
                    sched.start, release = t0 - k * self.period, t0
                try:
                    reading = self.sense()
                except StopLoop:
                    r.stop_reason = "sensor_end"
                    break
                t1 = self.clock()
                action, ok = self._infer(reading, k)
                t2 = self.clock()
                self.act(action)
                t3 = self.clock()
                r.ticks += 1
                if t3 > sched.deadline(k):
                    r.overruns += 1
                log.tick.append(k); log.release.append(release); log.start.append(t0)
                log.sense.append(t1 - t0); log.infer.append(t2 - t1); log.act.append(t3 - t2)
                log.status.append("ok" if ok else "miss")
                if on_tick is not None:
                    on_tick(k)
                if not ok and self.policy.stops_on_miss:
                    r.stop_reason = "miss_policy_stop"
                    break
                k, skipped = sched.next_tick(k, self.clock()) if cfg.realtime else (k + 1, 0)
                r.skipped_ticks += skipped
            else:
                r.stop_reason = "max_steps"
        except KeyboardInterrupt as e:
            r.stop_reason = getattr(e, "stop_reason", "interrupted")  # "terminated" for SIGTERM (runtime/signals.py)
        finally:
            self.policy.set_timeout(previous_timeout)
        self._finish()
        return r

    def _finish(self) -> None:
        a = self.log.arrays()
        r = self.report
        total = a["sense"] + a["infer"] + a["act"] if a["sense"].size else a["sense"]
        r.phases = {"sense": summarize(a["sense"]), "infer": summarize(a["infer"]), "act": summarize(a["act"]),
                    "total": summarize(total)}
        r.jitter = jitter(a["start"], a["release"], self.period, a["tick"]) if self.config.realtime else {}
