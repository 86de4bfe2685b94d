"""The fixed-rate loop, driven by a fake clock: drift-free releases, overrun/skip/miss accounting, the miss
policies, the watchdog, bad input mid-loop, and Ctrl-C still producing a report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lram.runtime.control_loop import ControlLoop, LoopConfig, Reading, StopLoop
from lram.runtime.deadlines import Schedule


def _loop(policy, clock, sense, hz=100.0, acts=None, miss_policy=None, **kw):
    acts = [] if acts is None else acts
    kw.setdefault("timeout_periods", None)
    kw.setdefault("warmup", 0)
    if miss_policy is not None:
        policy.set_miss_policy(miss_policy)
    return ControlLoop(policy, sense, lambda a: acts.append(a.copy()), LoopConfig(hz=hz, **kw), clock=clock,
                       sleep=clock.sleep), acts


def _sensor(helpers, clock=None, costs=None, n=1, rtg=None):
    """Valid readings; advances the fake clock by costs[tick] seconds to simulate sensing work."""
    state = {"k": 0}

    def sense():
        k = state["k"]
        state["k"] += 1
        if clock is not None and costs is not None:
            clock.advance(costs(k))
        return Reading(helpers.obs_batch(n, k), prev_reward=-0.1, first=k == 0, rtg=rtg)

    return sense


def test_schedule_is_absolute():
    s = Schedule(0.02, 5.0)
    assert s.release(1000) == 5.0 + 1000 * 0.02
    assert s.next_tick(3, 5.0 + 3 * 0.02 + 0.019) == (4, 0)  # finished within the period
    assert s.next_tick(3, 5.0 + 4 * 0.02 + 0.005) == (4, 0)  # tick 4 starts late, within its period
    assert s.next_tick(3, 5.0 + 6 * 0.02 + 0.005) == (6, 2)  # ticks 4 and 5 are gone


def test_drift_free_releases(make_policy, helpers):
    clock = helpers.FakeClock()
    p = make_policy(n=1)
    p.backend = helpers.ScriptedBackend(p.backend, clock=clock, cost_s=0.002)
    rng = np.random.default_rng(0)
    loop, acts = _loop(p, clock, _sensor(helpers, clock, lambda k: rng.uniform(0.0005, 0.006)))
    rep = loop.run(max_steps=500)
    starts = np.array(loop.log.start)
    t0 = starts[0]
    # every tick starts exactly on start + k * period, however long the work took: no accumulated drift
    np.testing.assert_allclose(starts - t0, np.arange(500) * 0.01, rtol=0, atol=1e-9)
    assert rep.ticks == 500 and rep.overruns == 0 and rep.skipped_ticks == 0 and rep.missed == 0
    assert rep.stop_reason == "max_steps" and len(acts) == 500
    assert rep.jitter["start_lateness"]["max_ms"] < 1e-6
    assert rep.phases["infer"]["p50_ms"] == pytest.approx(2.0)


def test_overrun_skips_and_counts(make_policy, helpers):
    clock = helpers.FakeClock()
    p = make_policy(n=1)
    loop, acts = _loop(p, clock, _sensor(helpers, clock, lambda k: 0.025 if k == 3 else 0.001))
    rep = loop.run(max_steps=8)
    assert loop.log.tick == [0, 1, 2, 3, 5, 6, 7, 8]
    assert rep.overruns == 1 and rep.skipped_ticks == 1
    late = np.array(loop.log.start) - np.array(loop.log.release)
    assert late[4] == pytest.approx(0.005)  # tick 5 started late, inside its own period
    assert np.allclose(np.delete(late, 4), 0)
    assert rep.missed == 0  # an overrun is not a miss: the model's action was still sent


def test_no_realtime_never_sleeps_but_accounts(make_policy, helpers):
    clock = helpers.FakeClock()
    p = make_policy(n=1)
    loop, _ = _loop(p, clock, _sensor(helpers, clock, lambda k: 0.015 if k % 5 == 0 else 0.002), realtime=False)
    rep = loop.run(max_steps=20)
    assert clock.sleeps == [] and rep.ticks == 20 and rep.overruns == 4 and rep.skipped_ticks == 0


@pytest.mark.parametrize("miss_policy", ["hold", "zero", "stop"])
def test_miss_policies_on_backend_error(make_policy, helpers, miss_policy):
    clock = helpers.FakeClock()
    p = make_policy(n=1)
    p.backend = helpers.ScriptedBackend(p.backend, fail_on={3})
    loop, acts = _loop(p, clock, _sensor(helpers), miss_policy=miss_policy)
    rep = loop.run(max_steps=6)
    assert rep.misses == {"backend_error": 1}
    assert "injected backend failure" in rep.events[0]["reason"] and rep.events[0]["tick"] == 3
    if miss_policy == "hold":
        np.testing.assert_array_equal(acts[3], acts[2])
        assert rep.ticks == 6 and rep.stop_reason == "max_steps"
    elif miss_policy == "zero":
        np.testing.assert_array_equal(acts[3], [[0.0]])
        assert rep.ticks == 6
    else:
        np.testing.assert_array_equal(acts[3], [[0.0]])
        assert rep.ticks == 4 and rep.stop_reason == "miss_policy_stop"
    assert not np.array_equal(acts[2], acts[1])  # the model's actions do vary: hold is a real check


def test_backend_error_does_not_advance_state(make_policy, helpers):
    clock = helpers.FakeClock()
    p, ref = make_policy(n=1), make_policy(n=1)
    p.backend = helpers.ScriptedBackend(p.backend, fail_on={2})
    # explicit rtg: the policy's own bookkeeping counts tick 2's reward (it was really collected), which the
    # reference below, skipping tick 2, would not
    loop, acts = _loop(p, clock, _sensor(helpers, rtg=3.0))
    loop.run(max_steps=5)
    # the reference steps the same readings but skips tick 2 (whose call failed): identical final state
    for k in [0, 1, 3, 4]:
        ref.step(helpers.obs_batch(1, k), rtg=3.0, prev_reward=-0.1, first=k == 0)
    assert all(np.array_equal(p.slots.state[n], ref.slots.state[n]) for n in p.slots.state)


def test_bad_input_mid_loop_is_counted(make_policy, helpers):
    clock = helpers.FakeClock()
    p = make_policy(n=2)
    k = {"i": 0}

    def sense():
        i = k["i"]
        k["i"] += 1
        obs = helpers.obs_batch(2, i)
        if i == 4:
            obs[0, 1] = np.nan
        if i == 6:
            obs = obs[:, :2]
        return Reading(obs, prev_reward=0.0, first=i == 0)

    loop, acts = _loop(p, clock, sense)
    rep = loop.run(max_steps=10)
    assert rep.misses == {"rejected_input": 3}  # one robot at tick 4, both at tick 6
    reasons = [(e["tick"], e["slot"], e["reason"]) for e in rep.events]
    assert reasons[0][:2] == (4, 0) and "NaN" in reasons[0][2]
    assert "shape" in reasons[1][2]
    assert rep.ticks == 10 and loop.log.status.count("miss") == 2


def test_warmup_runs_before_first_tick_without_touching_state(make_policy, helpers):
    clock = helpers.FakeClock()
    p = make_policy(n=1)
    p.backend = helpers.ScriptedBackend(p.backend)
    snap = p.snapshot()
    p.warmup(5)
    assert all(np.array_equal(snap.state[n], p.slots.state[n]) for n in snap.state)
    loop, _ = _loop(p, clock, _sensor(helpers), warmup=7)
    rep = loop.run(max_steps=3)
    assert p.backend.calls == 5 + 7 + 3 and rep.warmup["steps"] == 7


def _sensor_raising(helpers, exc, at):
    """Valid readings until call ``at``, which raises ``exc``."""
    inner = _sensor(helpers)
    count = {"n": 0}

    def sense():
        count["n"] += 1
        if count["n"] >= at:
            raise exc
        return inner()

    return sense


def test_keyboard_interrupt_still_reports(make_policy, helpers, tmp_path):
    clock = helpers.FakeClock()
    p = make_policy(n=1)
    loop, _ = _loop(p, clock, _sensor_raising(helpers, KeyboardInterrupt, 6))
    rep = loop.run(max_steps=100)
    assert rep.stop_reason == "interrupted" and rep.ticks == 5
    d = json.loads(rep.write_json(tmp_path / "r.json").read_text())
    assert d["ticks"] == 5 and d["phases"]["total"]["count"] == 5 and d["stop_reason"] == "interrupted"


def test_sensor_end(make_policy, helpers):
    clock = helpers.FakeClock()
    p = make_policy(n=1)
    rep = _loop(p, clock, _sensor_raising(helpers, StopLoop, 5))[0].run()
    assert rep.stop_reason == "sensor_end" and rep.ticks == 4


def test_watchdog_times_out_stalled_backend(make_policy, helpers):
    """Real threads and real time: one call stalls for 0.6 s, the loop (100 ms timeout) keeps going.

    The timeout is generous so that a loaded CI machine does not turn ordinary calls into timeouts."""
    import time

    p = make_policy(n=1, miss_policy="zero")
    p.backend = helpers.ScriptedBackend(p.backend, stall_on={2}, stall_s=0.6)
    acts = []
    loop = ControlLoop(p, _sensor(helpers), lambda a: acts.append(a.copy()),
                       LoopConfig(hz=20, warmup=0, timeout_periods=2.0))  # 100 ms
    t = time.perf_counter()
    rep = loop.run(max_steps=30)
    elapsed = time.perf_counter() - t
    assert rep.ticks == 30 and elapsed < 5.0
    assert 1 <= rep.misses["timeout"] < 30 and set(rep.misses) == {"timeout"}
    assert "did not answer" in rep.events[0]["reason"]
    assert any("still busy" in e["reason"] for e in rep.events)  # no pile-up of threads on a stuck backend
    np.testing.assert_array_equal(acts[2], [[0.0]])
    assert loop.log.status[-1] == "ok"  # the backend recovered and the model is back in control


def test_real_clock_with_spin(make_policy, helpers):
    """The real clock and sleep, with the busy-wait tail: runs on schedule (no timing asserts: CI is noisy)."""
    p = make_policy(n=1)
    loop = ControlLoop(p, _sensor(helpers), lambda a: None, LoopConfig(hz=200, warmup=2, spin_ms=1.0))
    rep = loop.run(max_steps=20)
    assert rep.ticks == 20 and rep.config["spin_ms"] == 1.0
    assert rep.jitter["start_lateness"]["count"] == 20
    assert np.all(np.array(loop.log.start) >= np.array(loop.log.release))  # never starts early
