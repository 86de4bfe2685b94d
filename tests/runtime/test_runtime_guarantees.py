"""Issue 14: the runtime never lies about its state. One test (or a few) per defect the hostile test found.

Numbers in the test names refer to the defects of issue 14.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from lram.runtime.input_checks import InputRejected
from lram.runtime.manifest import ManifestError
from lram.runtime.policy import Policy
from lram.runtime.slots import Slots, Snapshot


def _same(a: Snapshot, b: Snapshot) -> bool:
    """Bit-exact equality of everything a snapshot holds: state, pending episode starts, returns, last actions."""
    if a.state.keys() != b.state.keys() or not np.array_equal(a.pending_first, b.pending_first):
        return False
    if not all(np.array_equal(a.state[k], b.state[k]) for k in a.state):
        return False
    ra, rb = a.extra["returns"], b.extra["returns"]
    return (all(np.array_equal(ra[k], rb[k]) for k in ra)
            and np.array_equal(a.extra["last_action"], b.extra["last_action"]))


def _finite_state(p) -> bool:
    return all(np.isfinite(v).all() for v in p.slots.state.values())


@pytest.fixture
def discrete_model(tmp_path, fake):
    """A discrete-action graph: its argmax action stays finite even when logits and state are NaN, so the
    non-finite-action guard cannot hide a bad input here."""
    return fake.write_fake_policy(tmp_path / "disc.onnx", fake.make_manifest(obs_dim=3, discrete=5, target_return=10.0))


# -- 1: a non-finite target return never reaches the graph ------------------------------------------------

@pytest.mark.parametrize("target", [np.nan, np.inf, -np.inf, 1e39])
def test_1_bad_target_return_refused_at_load(pendulum_model, target):
    with pytest.raises(ValueError, match="target_return"):
        Policy.load(pendulum_model, n_robots=2, backend="ort-cpu", target_return=target)


def test_1_non_finite_manifest_target_refused(tmp_path, fake):
    path = fake.write_fake_policy(tmp_path / "m.onnx", fake.make_manifest(target_return=float("nan")))
    with pytest.raises(ValueError, match="target_return"):
        Policy.load(path, backend="ort-cpu")


@pytest.mark.parametrize("target", [np.nan, np.inf, "ten"])
def test_1_bad_target_return_refused_at_reset(make_policy, discrete_model, helpers, target):
    p = make_policy(n=2, path=discrete_model)
    p.step(helpers.obs_batch(2, 0), first=True)
    before = p.snapshot()
    with pytest.raises(ValueError, match="target_return"):
        p.reset(1, target_return=target)
    assert _same(before, p.snapshot())  # refused before anything changed
    res = p.step_detailed(helpers.obs_batch(2, 1), prev_reward=0.5)
    assert res.ok.all() and np.isfinite(res.rtg).all() and _finite_state(p)


def test_1_computed_return_to_go_passes_the_input_checks(make_policy, tmp_path, fake, helpers):
    """The tracker's own rtg overflows float32: the row is refused like any bad input, nothing NaN is fed."""
    path = fake.write_fake_policy(tmp_path / "big.onnx", fake.make_manifest(obs_dim=3, discrete=5, target_return=3e38))
    p = make_policy(n=2, path=path)
    p.step(helpers.obs_batch(2, 0), first=True)
    before = p.snapshot()
    res = p.step_detailed(helpers.obs_batch(2, 1), prev_reward=[0.0, -3e38])  # robot 1: rtg = 6e38 > float32 max
    assert list(res.ok) == [True, False]
    assert res.rejected[1].kind == "range" and "rtg" in res.rejected[1].reason
    assert _finite_state(p)
    for k in before.state:
        assert np.array_equal(before.state[k][1], p.slots.state[k][1])
    # the refused reward was not counted: the next accepted step asks for the target again
    assert p.step_detailed(helpers.obs_batch(2, 2), prev_reward=0.0).rtg[1, 0] == np.float32(3e38)


# -- 2: after reset() the next step is an episode start for the return tracker too -------------------------

def test_2_reset_then_step_equals_fresh_episode(make_policy, helpers):
    p, fresh = make_policy(n=2, target_return=10.0), make_policy(n=2, target_return=10.0)
    for t in range(4):
        p.step(helpers.obs_batch(2, t), prev_reward=1.0, first=t == 0)
    p.reset()
    o = helpers.obs_batch(2, 9)
    a = p.step_detailed(o, prev_reward=5.0, first=False)  # the reward of the old episode's last action
    b = fresh.step_detailed(o, prev_reward=5.0, first=True)
    np.testing.assert_array_equal(a.rtg, b.rtg)
    np.testing.assert_array_equal(a.action, b.action)
    assert _same(p.snapshot(), fresh.snapshot())


def test_2_reset_one_slot(make_policy, helpers):
    p = make_policy(n=2, target_return=10.0)
    p.step(helpers.obs_batch(2, 0), prev_reward=0.0, first=True)
    p.step(helpers.obs_batch(2, 1), prev_reward=1.0)
    p.reset(1, target_return=20.0)
    rtg = p.step_detailed(helpers.obs_batch(2, 2), prev_reward=2.0).rtg[:, 0]
    np.testing.assert_array_equal(rtg, [7.0, 20.0])


# -- 3: a wholly rejected batch counts no reward ---------------------------------------------------------

@pytest.mark.parametrize("bad", ["shape", "flag"])
def test_3_rejected_batch_counts_no_reward(make_policy, helpers, bad):
    p = make_policy(n=2, target_return=10.0)
    p.step(helpers.obs_batch(2, 0), prev_reward=0.0, first=True)
    before = p.snapshot()
    obs, first = helpers.obs_batch(2, 1), False
    if bad == "shape":
        obs = obs[:, :2]
    else:
        first = 2
    res = p.step_detailed(obs, prev_reward=1.0, first=first)
    assert not res.ok.any()
    assert _same(before, p.snapshot())
    # the caller retries the tick: the reward is counted once
    rtg = p.step_detailed(helpers.obs_batch(2, 1), prev_reward=1.0).rtg
    np.testing.assert_array_equal(rtg[:, 0], [9.0, 9.0])


def test_3_backend_failure_counts_no_reward(make_policy, helpers):
    p = make_policy(n=1, target_return=10.0)
    p.step(helpers.obs_batch(1, 0), first=True)
    before = p.snapshot()
    p.backend = helpers.ScriptedBackend(p.backend, fail_on={0})
    with pytest.raises(RuntimeError, match="injected"):
        p.step(helpers.obs_batch(1, 1), prev_reward=1.0)
    assert _same(before, p.snapshot())
    assert p.step_detailed(helpers.obs_batch(1, 1), prev_reward=1.0).rtg[0, 0] == 9.0


# -- 4: strict raises before anything is committed -------------------------------------------------------

def test_4_strict_raises_before_commit(make_policy, helpers):
    p = make_policy(n=3)
    for t in range(3):
        p.step(helpers.obs_batch(3, t), prev_reward=0.5, first=t == 0)
    before = p.snapshot()
    obs = helpers.obs_batch(3, 7)
    obs[1, 0] = np.nan
    with pytest.raises(InputRejected, match="robot 1"):
        p.step(obs, prev_reward=0.5, strict=True)
    assert _same(before, p.snapshot())  # the good rows 0 and 2 did not advance either


def test_4_strict_non_finite_action_commits_nothing(make_policy, helpers):
    p = make_policy(n=2)
    p.step(helpers.obs_batch(2, 0), first=True)
    before = p.snapshot()
    inner = p.backend

    class NaNRow1:
        def run(self, feeds):
            out = inner.run(feeds)
            out["action"] = out["action"].copy()
            out["action"][1] = np.nan
            return out

    NaNRow1.close = lambda self: inner.close()
    p.backend = NaNRow1()
    with pytest.raises(InputRejected, match="non-finite action"):
        p.step(helpers.obs_batch(2, 1), strict=True)
    assert _same(before, p.snapshot())


# -- 5: flags are validated, not cast --------------------------------------------------------------------

@pytest.mark.parametrize("first", [2, -1, 0.5, np.nan, "no", 1.0, [True, 2], np.array([0.0, 1.0]),
                                   np.array([1, 3]), None, [True, False, True], object()])
def test_5_bad_first_flag_rejected(make_policy, helpers, first):
    p = make_policy(n=2)
    for t in range(3):
        p.step(helpers.obs_batch(2, t), prev_reward=0.5, first=t == 0)
    before = p.snapshot()
    res = p.step_detailed(helpers.obs_batch(2, 5), prev_reward=0.5, first=first)
    assert not res.ok.any()
    assert {r.kind for r in res.rejected.values()} == {"flag"}
    assert "first" in res.rejected[0].reason and "bool" in res.rejected[0].reason
    assert _same(before, p.snapshot())  # no row lost its memory


@pytest.mark.parametrize("first,want", [(True, [True, True]), (np.True_, [True, True]), (0, [False, False]),
                                        ([1, 0], [True, False]), (np.array([0, 1], np.uint8), [False, True]),
                                        (np.array([True, False]), [True, False]),
                                        (np.array([[False], [True]]), [False, True])])
def test_5_good_first_flags(make_policy, helpers, first, want):
    p, q = make_policy(n=2), make_policy(n=2)
    for t in range(3):
        o = helpers.obs_batch(2, t)
        p.step(o, prev_reward=0.5, first=t == 0)
        q.step(o, prev_reward=0.5, first=t == 0)
    o = helpers.obs_batch(2, 5)
    np.testing.assert_array_equal(p.step(o, prev_reward=0.5, first=first),
                                  q.step(o, prev_reward=0.5, first=np.array(want)))


@pytest.mark.parametrize("which,value", [("prev_reward", "1.0"), ("rtg", "5"), ("prev_reward", [1.0, "x"])])
def test_5_numbers_are_not_parsed_from_strings(make_policy, helpers, which, value):
    p = make_policy(n=2)
    p.step(helpers.obs_batch(2, 0), first=True)
    kw = {"rtg": 1.0, "prev_reward": 0.0, which: value}
    res = p.step_detailed(helpers.obs_batch(2, 1), **kw)
    assert not res.ok.any() and which in res.rejected[0].reason


# -- 6: Slots and Policy lifecycle -----------------------------------------------------------------------

@pytest.mark.parametrize("slot", [True, False, np.True_, 1.0, "0", -1, 2])
def test_6_reset_refuses_non_index(make_policy, helpers, slot):
    p = make_policy(n=2)
    p.step(helpers.obs_batch(2, 0), first=True)
    before = p.snapshot()
    with pytest.raises((TypeError, IndexError), match="slot"):
        p.reset(slot)
    assert _same(before, p.snapshot())


def test_6_slots_reset_refuses_bool(fake):
    s = Slots(fake.make_manifest().state, 3)
    for arr in s.state.values():
        arr[...] = 1
    with pytest.raises(TypeError, match="slot"):
        s.reset(True)
    assert all(arr.all() for arr in s.state.values())
    s.reset(np.int64(1))
    assert not s.state["1.h"][1].any() and s.state["1.h"][0].all()


def _bad_snapshots(snap: Snapshot):
    st = dict(snap.state)
    yield "dtype", Snapshot({**st, "1.h": st["1.h"].astype(np.float64)}, snap.pending_first, snap.extra)
    yield "shape", Snapshot({**st, "0.C": st["0.C"][:, :2]}, snap.pending_first, snap.extra)
    yield "missing", Snapshot({"0.C": st["0.C"]}, snap.pending_first, snap.extra)
    yield "unknown", Snapshot({**st, "2.x": st["1.h"]}, snap.pending_first, snap.extra)
    yield "pending_first", Snapshot(st, snap.pending_first[:1], snap.extra)
    yield "pending_first", Snapshot(st, snap.pending_first.astype(np.float32), snap.extra)
    yield "returns", Snapshot(st, snap.pending_first, {**snap.extra, "returns": {"target": np.zeros(5), "collected": np.zeros(5)}})
    yield "last_action", Snapshot(st, snap.pending_first, {**snap.extra, "last_action": np.zeros((2, 3), np.float32)})


def test_6_restore_checks_the_snapshot(make_policy, helpers):
    p = make_policy(n=2)
    p.step(helpers.obs_batch(2, 0), first=True)
    good = p.snapshot()
    p.step(helpers.obs_batch(2, 1), prev_reward=1.0)
    before = p.snapshot()
    for what, bad in _bad_snapshots(good):
        with pytest.raises(ValueError, match="snapshot"):
            p.restore(bad)
        assert _same(before, p.snapshot()), what  # a refused restore changes nothing
    p.restore(good)
    assert _same(good, p.snapshot())


def test_6_step_after_close_is_a_clear_error(make_policy, helpers):
    p = make_policy(n=1)
    p.step(helpers.obs_batch(1), first=True)
    p.close()
    for call in (lambda: p.step(helpers.obs_batch(1)), lambda: p.warmup(1), lambda: p.reset(0)):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    p.close()  # closing twice is harmless


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "3", None])
def test_6_n_robots_must_be_a_positive_int(pendulum_model, fake, n):
    with pytest.raises(ValueError, match="n_robots"):
        Policy.load(pendulum_model, n_robots=n, backend="ort-cpu")
    with pytest.raises(ValueError, match="n_robots"):
        Slots(fake.make_manifest().state, n)


# -- 8: range before cast --------------------------------------------------------------------------------

def test_8_huge_float64_is_out_of_range_not_nan(make_policy, tmp_path, fake, helpers):
    bounded = make_policy(n=2)
    unbounded = make_policy(n=2, path=fake.write_fake_policy(tmp_path / "u.onnx", fake.make_manifest(obs_dim=3)))
    for p in (bounded, unbounded):
        obs = helpers.obs_batch(2, 0).astype(np.float64)
        obs[1, 2] = 1e300
        res = p.step_detailed(obs, rtg=1.0, first=True)
        assert list(res.ok) == [True, False]
        assert res.rejected[1].kind == "range" and "NaN" not in res.rejected[1].reason
        assert "2" in res.rejected[1].reason  # names the dimension


def test_8_huge_float64_reward_is_out_of_range(make_policy, helpers):
    p = make_policy(n=2)
    res = p.step_detailed(helpers.obs_batch(2, 0), rtg=[1.0, 1e300], first=True)
    assert list(res.ok) == [True, False] and res.rejected[1].kind == "range" and "rtg" in res.rejected[1].reason


# -- 10: one Policy, two threads -------------------------------------------------------------------------

class _SlowBackend:
    """Wraps a backend and sleeps inside run (outside the GIL, like a real inference) to widen any race."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.inputs, self.outputs, self.metadata = "slow", inner.inputs, inner.outputs, inner.metadata

    def run(self, feeds):
        import time

        out = self.inner.run(feeds)
        time.sleep(0.0002)
        return out

    def close(self):
        self.inner.close()


def test_10_two_threads_lose_no_step(make_policy, helpers):
    shared, ref = make_policy(n=1, target_return=1e3), make_policy(n=1, target_return=1e3)
    shared.backend = _SlowBackend(shared.backend)
    obs = helpers.obs_batch(1, 3)
    for p in (shared, ref):
        p.step(obs, prev_reward=0.25, first=True)
    for _ in range(400):
        ref.step(obs, prev_reward=0.25)
    errors = []

    def worker():
        try:
            for _ in range(200):
                shared.step(obs, prev_reward=0.25)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _same(shared.snapshot(), ref.snapshot())


def test_10_reset_from_another_thread_applies_between_steps(make_policy, helpers):
    """A ROS 2 service thread resets while the control thread steps: the reset lands between two steps."""
    p = make_policy(n=2)
    p.backend = _SlowBackend(p.backend)
    obs = helpers.obs_batch(2, 1)
    p.step(obs, first=True)
    stop = threading.Event()

    def control():
        while not stop.is_set():
            p.step(obs, prev_reward=0.1)

    t = threading.Thread(target=control)
    t.start()
    try:
        for _ in range(50):
            p.reset(1)
            snap = p.snapshot()
            # whatever step ran last, the snapshot is consistent: a pending row has a zero state
            for k in snap.state:
                if snap.pending_first[1]:
                    assert not snap.state[k][1].any()
    finally:
        stop.set()
        t.join()
    assert _finite_state(p)


# -- 7: the manifest is checked against the graph's full shapes at load -----------------------------------

def _sidecar_lies(tmp_path, fake, manifest_edit, graph_manifest=None):
    """The genuine graph (no embedded manifest) with a sidecar that is internally consistent but wrong."""
    import dataclasses  # noqa: F401  (used by the edits)

    from lram.runtime.manifest import sidecar_path

    m = graph_manifest or fake.make_manifest()
    path = fake.write_fake_policy(tmp_path / "m.onnx", m, metadata=False)
    sidecar_path(path).write_text(manifest_edit(m).to_json())
    return path


def _resize_state(m, name, shape):
    import dataclasses

    from lram.runtime.manifest import StateSpec, TensorSpec

    state = [StateSpec(s.name, list(shape), s.dtype) if s.name == name else s for s in m.state]
    fix = lambda ts, prefix: [TensorSpec(t.name, ["batch", *shape], t.dtype) if t.name == f"{prefix}.{name}" else t
                              for t in ts]
    return dataclasses.replace(m, state=state, inputs=fix(m.inputs, "state_in"), outputs=fix(m.outputs, "state_out"))


def _resize_obs(m, d):
    import dataclasses

    from lram.runtime.manifest import TensorSpec

    return dataclasses.replace(m, observation={**m.observation, "shape": [d]},
                               inputs=[TensorSpec("obs", ["batch", d], "float32") if t.name == "obs" else t for t in m.inputs])


def _resize_action(m, d):
    import dataclasses

    from lram.runtime.manifest import TensorSpec

    return dataclasses.replace(m, action={**m.action, "shape": [d], "low": [-2.0] * d, "high": [2.0] * d},
                               outputs=[TensorSpec("action", ["batch", d], "float32") if t.name == "action" else t
                                        for t in m.outputs])


@pytest.mark.parametrize("edit,match", [
    (lambda m: _resize_state(m, "1.h", [32]), r"state_in.1.h': graph shape \[None, 16\], manifest shape \['batch', 32\]"),
    (lambda m: _resize_state(m, "0.C", [4, 8, 9]), r"dimension 3: 8 vs 9"),
    (lambda m: _resize_obs(m, 4), r"input 'obs': graph shape \[None, 3\], manifest shape \['batch', 4\]"),
    (lambda m: _resize_action(m, 2), r"output 'action': graph shape \[None, 1\], manifest shape \['batch', 2\]"),
])
def test_7_wrong_dimensions_refused_at_load(tmp_path, fake, edit, match):
    with pytest.raises(ManifestError, match=match):
        Policy.load(_sidecar_lies(tmp_path, fake, edit), backend="ort-cpu")


def test_7_manifest_parts_must_agree_with_its_tensors(tmp_path, fake):
    import dataclasses

    from lram.runtime.manifest import StateSpec

    edit = lambda m: dataclasses.replace(m, state=[StateSpec("0.C", [4, 8, 8]), StateSpec("1.h", [15])])
    with pytest.raises(ManifestError, match=r"state '1.h' is float32 \[15\] per robot"):
        Policy.load(_sidecar_lies(tmp_path, fake, edit), backend="ort-cpu")


def _fixed_batch(m, b):
    import dataclasses

    from lram.runtime.manifest import TensorSpec

    fix = lambda ts: [TensorSpec(t.name, [b, *t.shape[1:]], t.dtype) for t in ts]
    return dataclasses.replace(m, inputs=fix(m.inputs), outputs=fix(m.outputs))


def test_7_fixed_batch_must_equal_robots(tmp_path, fake, helpers):
    path = fake.write_fake_policy(tmp_path / "b7.onnx", _fixed_batch(fake.make_manifest(), 7))
    with pytest.raises(ManifestError, match="fixed batch of 7, it cannot run 3 robots"):
        Policy.load(path, n_robots=3, backend="ort-cpu")
    p = Policy.load(path, n_robots=7, backend="ort-cpu")
    assert p.step(helpers.obs_batch(7), first=True).shape == (7, 1)
    p.close()


def test_7_fixed_batch_graph_with_dynamic_manifest_refused(tmp_path, fake):
    m = fake.make_manifest()
    path = _sidecar_lies(tmp_path, fake, lambda _: m, graph_manifest=_fixed_batch(m, 3))
    with pytest.raises(ManifestError, match="fixed batch of 3, the manifest says dynamic"):
        Policy.load(path, n_robots=3, backend="ort-cpu")


# -- 9: a failing warm-up is a clear error ---------------------------------------------------------------

def test_9_warmup_error_is_clear(make_policy, helpers):
    from lram.runtime.control_loop import ControlLoop, LoopConfig, Reading

    clock = helpers.FakeClock()
    p = make_policy(n=1)
    p.backend = helpers.ScriptedBackend(p.backend, fail_on={1})
    acts = []
    loop = ControlLoop(p, lambda: Reading(helpers.obs_batch(1)), acts.append,
                       LoopConfig(hz=100, warmup=3, timeout_periods=None), clock=clock, sleep=clock.sleep)
    with pytest.raises(RuntimeError, match=r"warm-up failed .*injected backend failure on call 1") as e:
        loop.run(max_steps=3)
    assert "\n" not in str(e.value) and acts == []  # one line, and nothing was sent to the robot


def test_1_nan_reward_is_named_alone_when_the_policy_computes_rtg(make_policy, helpers):
    p = make_policy(n=2)
    p.step(helpers.obs_batch(2, 0), first=True)
    res = p.step_detailed(helpers.obs_batch(2, 1), prev_reward=[0.0, np.nan])
    assert list(res.ok) == [True, False] and res.rejected[1].reason == "NaN/Inf in prev_reward"


def test_7_engine_max_batch_checked_at_load(pendulum_model):
    """A TensorRT engine is built for up to --max-batch robots: more is refused at load, not at the first step."""
    from lram.runtime.backends import make_backend
    from lram.runtime.model_files import read_manifest

    be = make_backend(pendulum_model, "ort-cpu")
    be.max_batch = 2  # what TensorRTBackend reports
    manifest = read_manifest(pendulum_model, be.metadata)
    with pytest.raises(ValueError, match="at most 2 robots"):
        Policy(be, manifest, n_robots=3)
    Policy(be, manifest, n_robots=2).close()
