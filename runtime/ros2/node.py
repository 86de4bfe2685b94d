"""The policy as a ROS 2 node: fixed-rate ticks on absolute deadlines, one policy slot per robot.

Per tick: apply enable/disable and episode resets, take the newest message of every input, build each
enabled robot's observation, step the Policy once for all robots, publish each enabled robot's command.
A robot whose inputs are older than ``stale_after_ms`` (or never came) is a miss: its state does not advance
and it gets the miss policy's action, as does a robot whose observation the Policy refuses or every robot
when inference fails or overruns the period. A disabled robot is neither stepped nor commanded; enabling it
starts a new episode (its history is gone), as does a message on its reset topic.

Inputs are taken once per tick, so an input's age counts from the tick that took it: stale detection
resolves to one control period, and a tick uses the newest message that arrived before it.

The DDS side sits behind a small transport (``DdsTransport``) so the logic runs with a fake one in tests.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..deadlines import Schedule
from .contract import Contract, extract
from .mapping import ActionEncoder, ObservationBuilder


@dataclass
class RobotCounters:
    enabled: bool = False
    ticks: int = 0  # ticks while enabled (each publishes one command)
    ok: int = 0  # commands that came from the model
    misses: int = 0  # commands that came from the miss policy
    stale: int = 0
    rejected: int = 0
    timeout: int = 0
    backend_error: int = 0
    resets: int = 0
    enables: int = 0


@dataclass
class NodeCounters:
    ticks: int = 0
    overruns: int = 0
    skipped_ticks: int = 0
    robots: list = field(default_factory=list)


class PolicyNode:
    def __init__(self, policy, contract: Contract, transport, clock=time.perf_counter, wall_ns=time.time_ns,
                 record=None, timeout_periods: float | None = 1.0):
        contract.check_against(policy.manifest)
        if policy.n != len(contract.robots):
            raise ValueError(f"the policy has {policy.n} slots but the contract names {len(contract.robots)} robots")
        self.policy, self.contract, self.transport = policy, contract, transport
        policy.set_miss_policy(contract.miss_policy)
        self.clock, self.wall_ns = clock, wall_ns
        self.period = contract.period
        # the model's time limit per tick in control periods (None: no limit), as runtime.control_loop.LoopConfig
        self.infer_timeout = None if timeout_periods is None else timeout_periods * self.period
        default_stale = contract.stale_after_ms / 1e3
        self.stale_s = {name: default_stale if s.stale_after_ms is None else s.stale_after_ms / 1e3
                        for name, s in contract.inputs.items()}
        self.n = policy.n
        self.builders = [ObservationBuilder(contract) for _ in range(self.n)]
        self.encoder = ActionEncoder(contract)
        self.used = sorted({e.input for e in contract.observation if e.kind == "field"})
        self.latest = [dict() for _ in range(self.n)]
        self.got_at = [dict() for _ in range(self.n)]
        self.counters = NodeCounters(robots=[RobotCounters() for _ in range(self.n)])
        self.record = record  # a text file: one JSON line per tick with a robot enabled (for tests and audits)
        self.stop_event = threading.Event()
        self._last_status = -np.inf
        self._restarted = []  # slots whose episode restarted this tick (enable or reset), for the record
        self._episode_start = np.ones(self.n, dtype=bool)  # no accepted step yet in this episode (the graph gets first=True)

    # -- one tick -----------------------------------------------------------------------------------------
    def _control(self) -> None:
        for r in range(self.n):
            rc = self.counters.robots[r]
            for on in self.transport.take_enable(r):
                if on and not rc.enabled:
                    self._new_episode(r)
                    rc.enabled, rc.enables = True, rc.enables + 1
                elif not on:
                    rc.enabled = False
            resets = self.transport.take_reset(r)
            if resets:
                self._new_episode(r)
                rc.resets += resets

    def _new_episode(self, r: int) -> None:
        self.policy.reset(r)
        self.builders[r].reset()
        self._restarted.append(r)
        self._episode_start[r] = True

    def tick(self, k: int) -> None:
        now = self.clock()
        self._restarted = []
        self._control()
        reward = np.zeros(self.n, dtype=np.float32)
        rw = self.contract.reward
        for r in range(self.n):
            news = self.transport.take_inputs(r)
            for name, msg in news.items():
                self.latest[r][name], self.got_at[r][name] = msg, now
            # a reward counts once, when it arrives (the Policy sums rewards into the return-to-go)
            if rw is not None and rw.input in news:
                reward[r] = ((extract(rw, news[rw.input]) - rw.offset) * rw.scale)[0]
        rcs = self.counters.robots
        active = [r for r in range(self.n) if rcs[r].enabled]
        self.counters.ticks += 1
        if not active:
            self._status(now)
            return
        obs = np.full((self.n, self.contract.obs_size), np.nan, dtype=np.float32)
        verdict = {}
        for r in active:
            got = self.got_at[r]
            if any(name not in got or now - got[name] > self.stale_s[name] for name in self.used):
                verdict[r] = "stale"
                continue
            obs[r] = self.builders[r].build(self.latest[r])
        first = self._episode_start.copy()
        fresh = [r for r in active if r not in verdict]
        if fresh:
            res = self.policy.step_detailed(obs, None, reward, False)
            action = res.action
            for r in fresh:  # a backend with no answer (timeout, error) costs one safe action, not the robot
                verdict[r] = res.failure[0] if res.failure is not None else ("ok" if res.ok[r] else "rejected")
        else:
            action = self.policy.miss_action()
        stamp = self.wall_ns()
        rows = []
        for r in active:
            v, rc = verdict[r], rcs[r]
            self.transport.publish_action(r, self.encoder.message(action[r], stamp))
            rc.ticks += 1
            if v == "ok":
                rc.ok += 1
                self._episode_start[r] = False
            else:
                rc.misses += 1
                setattr(rc, v, getattr(rc, v) + 1)
                if self.policy.stops_on_miss:  # "stop": the neutral command went out; wait to be enabled again
                    rc.enabled = False
            if self.record is not None:
                rows.append({"slot": r, "status": v, "first": bool(first[r]) and v == "ok",
                             "stamps": {n: _stamp(self.latest[r].get(n)) for n in self.used},
                             "obs": obs[r].tolist(), "command": self.encoder.command(action[r]).tolist()})
        if self.record is not None:
            self.record.write(json.dumps({"tick": k, "restarted": self._restarted, "robots": rows}) + "\n")
            self.record.flush()
        self._status(now)

    def _status(self, now: float, force: bool = False) -> None:
        if not force and now - self._last_status < self.contract.status_period_ms / 1e3:
            return
        self._last_status = now
        for r in range(self.n):
            self.transport.publish_status(r, status_message(self.contract.node, r, self.counters))

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, max_ticks: int | None = None, warmup: int = 10) -> NodeCounters:
        """Tick until ``stop()`` (or ``max_ticks``). Sleeps on the stop event, so a stop lands within one tick."""
        self.policy.warmup(warmup)
        previous_timeout = self.policy.timeout_s
        self.policy.set_timeout(self.infer_timeout)
        sched = Schedule(self.period, self.clock())
        k = 0
        try:
            while not self.stop_event.is_set() and (max_ticks is None or self.counters.ticks < max_ticks):
                wait = sched.release(k) - self.clock()
                if wait > 0 and self.stop_event.wait(wait):
                    break
                self.tick(k)
                if self.clock() > sched.deadline(k):
                    self.counters.overruns += 1
                k, skipped = sched.next_tick(k, self.clock())
                self.counters.skipped_ticks += skipped
        finally:
            self.policy.set_timeout(previous_timeout)
            for rc in self.counters.robots:
                rc.enabled = False
            self._status(self.clock(), force=True)
        return self.counters

    def stop(self) -> None:
        self.stop_event.set()


def _stamp(msg):
    h = getattr(msg, "header", None)
    return None if h is None else [h.stamp.sec, h.stamp.nanosec]


def status_message(node: str, r: int, counters: NodeCounters):
    """diagnostic_msgs/DiagnosticStatus: what ``ros2 topic echo .../status`` shows for one robot."""
    from .messages import DiagnosticStatus, KeyValue

    rc = counters.robots[r]
    values = {**asdict(rc), "node_ticks": counters.ticks, "overruns": counters.overruns,
              "skipped_ticks": counters.skipped_ticks}
    level = 0 if rc.misses == 0 else 1
    return DiagnosticStatus(level=level, name=f"{node}/robot{r}", message="enabled" if rc.enabled else "disabled",
                            hardware_id=f"slot {r}",
                            values=[KeyValue(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()])
