"""Run a policy at a fixed rate: sense -> infer -> act on absolute deadlines, with a safe action whenever the
model has no answer in time, and an account of every tick.

Sensors and actuators are plain callables: ``sense() -> Reading`` (or a bare observation array; raise
``StopLoop`` when there is nothing more to do) and ``act(action)``. The clock and sleep are injectable so the
scheduling logic is tested with a fake clock.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .deadlines import Schedule
from .latency import jitter, summarize
from .report import LoopReport, TickLog
from .safe_action import MISS_POLICIES
from .watchdog import BackendTimeout, Watchdog


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


class ControlLoop:
    def __init__(self, policy, sense, act, hz: float, miss_policy: str | None = None, warmup: int = 10,
                 infer_timeout: float | None | str = "period", realtime: bool = True,
                 clock=time.perf_counter, sleep=time.sleep, max_events: int = 200, config: dict | None = None,
                 spin_s: float = 0.0):
        if hz <= 0:
            raise ValueError("hz must be positive")
        if miss_policy is not None:
            if miss_policy not in MISS_POLICIES:
                raise ValueError(f"unknown miss policy {miss_policy!r}; choose one of {', '.join(MISS_POLICIES)}")
            policy.safe.policy = miss_policy
        self.policy, self.sense, self.act = policy, sense, act
        self.period = 1.0 / hz
        self.hz = hz
        self.warmup_steps = int(warmup)
        # By default the model gets one period to answer: later than that its action is for a state that is gone.
        self.infer_timeout = self.period if infer_timeout == "period" else infer_timeout
        self.realtime = realtime
        self.clock, self.sleep = clock, sleep
        # OS sleeps wake late (~0.1-1 ms on a loaded machine); spinning the last ``spin_s`` before a release
        # trades that much CPU per tick for a punctual start. Off by default: it costs a core on small boards.
        self.spin_s = float(spin_s)
        self.max_events = max_events
        self.log = TickLog()
        self.report = LoopReport(config={"hz": hz, "period_ms": self.period * 1e3, "miss_policy": policy.safe.policy,
                                         "realtime": realtime, "robots": policy.n, "warmup_steps": self.warmup_steps,
                                         "spin_ms": spin_s * 1e3,
                                         "infer_timeout_ms": None if self.infer_timeout is None else self.infer_timeout * 1e3,
                                         "backend": getattr(policy.backend, "name", type(policy.backend).__name__),
                                         **(config or {})})

    # -- bookkeeping --------------------------------------------------------------------------------------
    def _miss(self, kind: str, tick: int, reason: str, slot: int | None = None) -> None:
        r = self.report
        r.misses[kind] = r.misses.get(kind, 0) + 1
        if len(r.events) < self.max_events:
            r.events.append({"tick": tick, "kind": kind, "slot": slot, "reason": reason})
        else:
            r.events_dropped += 1

    def _infer(self, reading, run, tick: int):
        """The action for this tick and whether every robot got the model's own action."""
        if not isinstance(reading, Reading):
            reading = Reading(np.asarray(reading), first=tick == 0)
        try:
            res = self.policy.step_detailed(reading.obs, reading.rtg, reading.prev_reward, reading.first, run=run)
        except BackendTimeout as e:
            self._miss("timeout", tick, str(e))
            return self.policy.safe.fill(None, np.zeros(self.policy.n, bool)), False
        except (KeyboardInterrupt, StopLoop):
            raise
        except Exception as e:  # a backend failure must cost one safe action, not the robot
            self._miss("backend_error", tick, f"{type(e).__name__}: {e}")
            return self.policy.safe.fill(None, np.zeros(self.policy.n, bool)), False
        for rej in res.rejected.values():
            self._miss("rejected_" + ("output" if rej.kind == "output" else "input"), tick, rej.reason, rej.slot)
        return res.action, not res.rejected

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None, on_tick=None) -> LoopReport:
        """Run until ``max_steps`` ticks, the sensor raises StopLoop, the miss policy says stop, or Ctrl-C.
        Always returns the report (also after KeyboardInterrupt)."""
        r = self.report
        watchdog = Watchdog(self.policy.backend.run, self.infer_timeout) if self.infer_timeout else None
        log, k = self.log, 0
        try:
            t = self.clock()
            try:
                self.policy.warmup(self.warmup_steps)
            except Exception as e:
                r.stop_reason = "warmup_failed"
                msg = " ".join(str(e).split()) or "no message"
                raise WarmupFailed(f"warm-up failed (the model did not run; nothing was sent): {type(e).__name__}: {msg}") from e
            r.warmup = {"steps": self.warmup_steps, "total_ms": (self.clock() - t) * 1e3}
            sched = Schedule(self.period, self.clock())
            while max_steps is None or r.ticks < max_steps:
                release = sched.release(k)
                if self.realtime:
                    now = self.clock()
                    if now < release - self.spin_s:
                        self.sleep(release - self.spin_s - now)
                    if self.spin_s > 0:
                        while self.clock() < release:
                            pass
                t0 = self.clock()
                if not self.realtime:  # as fast as possible: each tick's deadline counts from its own start
                    sched.start, release = t0 - k * self.period, t0
                try:
                    reading = self.sense()
                except StopLoop:
                    r.stop_reason = "sensor_end"
                    break
                t1 = self.clock()
                action, ok = self._infer(reading, watchdog, k)
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
                if not ok and self.policy.safe.stops:
                    r.stop_reason = "miss_policy_stop"
                    break
                k, skipped = sched.next_tick(k, self.clock()) if self.realtime else (k + 1, 0)
                r.skipped_ticks += skipped
            else:
                r.stop_reason = "max_steps"
        except KeyboardInterrupt as e:
            r.stop_reason = getattr(e, "stop_reason", "interrupted")  # "terminated" for SIGTERM (runtime/signals.py)
        finally:
            if watchdog is not None:
                watchdog.close()
        self._finish()
        return r

    def _finish(self) -> None:
        a = self.log.arrays()
        r = self.report
        total = a["sense"] + a["infer"] + a["act"] if a["sense"].size else a["sense"]
        r.phases = {"sense": summarize(a["sense"]), "infer": summarize(a["infer"]), "act": summarize(a["act"]),
                    "total": summarize(total)}
        r.jitter = jitter(a["start"], a["release"], self.period, a["tick"]) if self.realtime else {}
