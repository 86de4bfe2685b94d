"""Policy.step: state carried per robot, reset isolation, snapshots, and refusal of bad input."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from lram.runtime.input_checks import InputRejected


def _state_equal(a, b):
    return all(np.array_equal(a.state[k], b.state[k]) for k in a.state)


def _reference(path, obs_seq, rtg_seq, rew_seq, first_seq):
    """Drive the graph by hand: the runtime must give exactly these actions."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = obs_seq[0].shape[0]
    state = {"state_in.0.C": np.zeros((n, 4, 8, 8), np.float32), "state_in.1.h": np.zeros((n, 16), np.float32)}
    actions = []
    for obs, rtg, rew, first in zip(obs_seq, rtg_seq, rew_seq, first_seq):
        out = sess.run(None, {"obs": obs, "rtg": rtg, "prev_reward": rew, "first": first, **state})
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, out))
        actions.append(res["action"])
        state = {"state_in.0.C": res["state_out.0.C"], "state_in.1.h": res["state_out.1.h"]}
    return actions


def test_matches_hand_driven_graph_and_state_matters(make_policy, pendulum_model, helpers):
    p = make_policy(n=2)
    T = 12
    obs = [helpers.obs_batch(2, seed=t) for t in range(T)]
    rtg = [np.full((2, 1), 5.0 - t, np.float32) for t in range(T)]
    rew = [np.full((2, 1), -0.5 * t, np.float32) for t in range(T)]
    first = [np.array([t == 0, t == 0]) for t in range(T)]
    got = [p.step(o, r, w, f) for o, r, w, f in zip(obs, rtg, rew, first)]
    want = _reference(pendulum_model, obs, rtg, rew, first)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # the state really influences the action: the same inputs with a fresh state give another action
    fresh = _reference(pendulum_model, obs[-1:], rtg[-1:], rew[-1:], [np.array([True, True])])[0]
    assert np.abs(fresh - got[-1]).max() > 1e-3
    assert np.all(np.abs(np.concatenate(got)) <= 2.0)


def test_reset_slot_leaves_others_bit_identical(make_policy, helpers):
    p = make_policy(n=3)
    for t in range(5):
        p.step(helpers.obs_batch(3, t), rtg=1.0, prev_reward=0.1, first=t == 0)
    before = p.snapshot()
    p.reset(1)
    after = p.snapshot()
    for k in before.state:
        assert np.array_equal(before.state[k][0], after.state[k][0])
        assert np.array_equal(before.state[k][2], after.state[k][2])
        assert not after.state[k][1].any()
    assert list(after.pending_first) == [False, True, False]
    # and stepping on: slot 0 evolves exactly as in a twin policy that never reset anything
    twin = make_policy(n=3)
    twin.restore(before)
    o = helpers.obs_batch(3, 99)
    a, b = p.step(o, 1.0, 0.1, False), twin.step(o, 1.0, 0.1, False)
    assert a[0] == b[0] and a[2] == b[2] and a[1] != b[1]


def test_reset_slot_equals_first_flag(make_policy, helpers):
    p, q = make_policy(n=1), make_policy(n=1)
    for t in range(4):
        o = helpers.obs_batch(1, t)
        p.step(o, 1.0, 0.3, t == 0)
        q.step(o, 1.0, 0.3, t == 0)
    p.reset(0)
    o = helpers.obs_batch(1, 7)
    np.testing.assert_array_equal(p.step(o, 1.0, 0.3, False), q.step(o, 1.0, 0.3, True))


def test_snapshot_restore_continues_bit_identically(make_policy, helpers):
    p = make_policy(n=2)
    for t in range(3):
        p.step(helpers.obs_batch(2, t), first=t == 0, prev_reward=-1.0)
    snap = p.snapshot()
    seq = [p.step(helpers.obs_batch(2, 10 + t), prev_reward=-1.0) for t in range(4)]
    p.restore(snap)
    again = [p.step(helpers.obs_batch(2, 10 + t), prev_reward=-1.0) for t in range(4)]
    for a, b in zip(seq, again):
        np.testing.assert_array_equal(a, b)


def test_return_to_go_bookkeeping(make_policy, helpers):
    p = make_policy(n=2, target_return=10.0)
    r0 = p.step_detailed(helpers.obs_batch(2), prev_reward=[7.0, 7.0], first=True).rtg
    np.testing.assert_allclose(r0[:, 0], [10.0, 10.0])  # the reward before an episode start is not counted
    r1 = p.step_detailed(helpers.obs_batch(2), prev_reward=[1.0, 2.0], first=False).rtg
    np.testing.assert_allclose(r1[:, 0], [9.0, 8.0])
    r2 = p.step_detailed(helpers.obs_batch(2), prev_reward=[1.0, 2.0], first=[False, True]).rtg
    np.testing.assert_allclose(r2[:, 0], [8.0, 10.0])


# -- bad input ------------------------------------------------------------------------------------------

@pytest.fixture
def stepped(make_policy, helpers):
    p = make_policy(n=2, miss_policy="hold")
    last = None
    for t in range(4):
        last = p.step(helpers.obs_batch(2, t), 1.0, 0.2, t == 0)
    return p, last


@pytest.mark.parametrize("bad,kind", [
    (np.nan, "nonfinite"), (np.inf, "nonfinite"), (-np.inf, "nonfinite"), (50.0, "range"),
])
def test_bad_value_in_one_row(stepped, helpers, bad, kind):
    p, last = stepped
    before = p.snapshot()
    obs = helpers.obs_batch(2, 42)
    obs[1, 2] = bad
    res = p.step_detailed(obs, 1.0, 0.2, False)
    after = p.snapshot()
    assert list(res.ok) == [True, False] and res.rejected[1].kind == kind
    for k in before.state:  # robot 1 untouched, robot 0 advanced
        assert np.array_equal(before.state[k][1], after.state[k][1])
        assert not np.array_equal(before.state[k][0], after.state[k][0])
    assert res.action[1] == last[1]  # hold: robot 1 repeats its last good action


def test_nan_reward_rejected(stepped, helpers):
    p, _ = stepped
    before = p.snapshot()
    res = p.step_detailed(helpers.obs_batch(2), 1.0, [0.0, np.nan], False)
    assert list(res.ok) == [True, False] and "prev_reward" in res.rejected[1].reason
    assert np.array_equal(before.state["1.h"][1], p.snapshot().state["1.h"][1])


@pytest.mark.parametrize("obs,kind", [
    (np.zeros((2, 4), np.float32), "shape"),
    (np.zeros((3, 3), np.float32), "shape"),
    (np.zeros((2, 3), np.int32), "dtype"),
    (np.zeros((2, 3), object), "dtype"),
])
def test_bad_shape_or_dtype_rejects_every_row(stepped, obs, kind):
    p, last = stepped
    before = p.snapshot()
    res = p.step_detailed(obs, 1.0, 0.0, False)
    assert not res.ok.any() and {r.kind for r in res.rejected.values()} == {kind}
    assert _state_equal(before, p.snapshot())
    np.testing.assert_array_equal(res.action, last)
    with pytest.raises(InputRejected, match="robot 0"):
        p.step(obs, 1.0, 0.0, False, strict=True)


def test_zero_policy_sends_neutral_action(make_policy, helpers):
    p = make_policy(n=1, miss_policy="zero")
    p.step(helpers.obs_batch(1), first=True)
    obs = helpers.obs_batch(1)
    obs[0, 0] = np.nan
    np.testing.assert_array_equal(p.step(obs), [[0.0]])


def test_rejected_first_step_keeps_episode_start(make_policy, helpers):
    """If the step that starts an episode is refused, the next accepted step must still start from zero."""
    p, q = make_policy(n=1), make_policy(n=1)
    for t in range(3):
        p.step(helpers.obs_batch(1, t), 1.0, 0.5, t == 0)
    bad = helpers.obs_batch(1)
    bad[0, 0] = np.nan
    p.step(bad, 1.0, 0.5, True)  # refused episode start
    o = helpers.obs_batch(1, 5)
    np.testing.assert_array_equal(p.step(o, 1.0, 0.5, False), q.step(o, 1.0, 0.5, True))


def test_image_discrete_graph(tmp_path, fake, make_policy):
    path = fake.write_fake_policy(tmp_path / "img.onnx", fake.make_manifest(image=True, discrete=6, logits=True))
    p = make_policy(n=2, path=path)
    rng = np.random.default_rng(0)
    acts = {tuple(p.step(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8), 1.0, 0.0, t == 0)) for t in range(8)}
    assert all(0 <= a < 6 for pair in acts for a in pair) and len(acts) > 1
    res = p.step_detailed(np.zeros((2, 64, 64, 3), np.float32), 1.0, 0.0, False)
    assert {r.kind for r in res.rejected.values()} == {"dtype"}
