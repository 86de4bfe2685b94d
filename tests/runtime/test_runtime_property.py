"""Property: whatever a caller does (random interleavings of steps, strict steps, bad rows, bad batches,
resets, snapshots and restores for several robots), every robot's state, return sum, pending episode start and held
action equal those of a reference that saw only that robot's good inputs, bit for bit.

The reference is written from the contract, not from the runtime: it drives the raw graph with ONNX Runtime
and keeps its own per-row bookkeeping. Rows of one batch are computed independently (a MatMul row depends
only on its own input row), so feeding the same batch size makes the comparison exact.
"""
from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lram.runtime.input_checks import InputRejected

N = 3
TARGET = 50.0
LOW, HIGH = -2.0, 2.0

ROW_KINDS = ["good", "good", "good", "nan_obs", "inf_obs", "out_of_range", "huge_float64", "nan_reward"]


class Reference:
    def __init__(self, path, manifest):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.sess.get_outputs()]
        self.specs = manifest.state
        self.state = {s.name: np.zeros((N, *s.shape), np.float32) for s in self.specs}
        self.pending = np.ones(N, bool)
        self.collected = np.zeros(N)
        self.target = np.full(N, TARGET)
        self.last = np.zeros((N, 1), np.float32)  # neutral action: 0 is inside [-2, 2]

    def step(self, obs32, reward32, first, good):
        first_eff = self.pending | first
        collected = np.where(first_eff, 0.0, self.collected + reward32[:, 0].astype(np.float64))
        rtg = (self.target - collected).astype(np.float32).reshape(N, 1)
        z = lambda a: np.where(good.reshape((N,) + (1,) * (a.ndim - 1)), a, 0).astype(a.dtype)
        feeds = {"obs": z(obs32), "rtg": z(rtg), "prev_reward": z(reward32), "first": first_eff,
                 **{s.input: self.state[s.name] for s in self.specs}}
        out = dict(zip(self.names, self.sess.run(self.names, feeds)))
        for s in self.specs:
            self.state[s.name] = np.where(good.reshape((N,) + (1,) * len(s.shape)), out[s.output], self.state[s.name])
        self.collected = np.where(good, collected, self.collected)
        self.pending = (self.pending | first) & ~good
        action = np.clip(out["action"], LOW, HIGH)
        self.last = np.where(first[:, None], np.float32(0), self.last)  # an episode start holds nothing
        self.last = np.where(good[:, None], action, self.last)
        return np.where(good[:, None], action, self.last)

    def refused(self, first):
        self.pending |= first
        self.last[first] = 0.0

    def reset(self, slot, target):
        rows = range(N) if slot is None else [slot]
        for i in rows:
            for a in self.state.values():
                a[i] = 0
            self.pending[i] = True
            self.collected[i] = 0.0
            self.last[i] = 0.0
            if target is not None:
                self.target[i] = target

    def snapshot(self):
        return copy.deepcopy((self.state, self.pending, self.collected, self.target, self.last))

    def restore(self, snap):
        self.state, self.pending, self.collected, self.target, self.last = copy.deepcopy(snap)


def _obs(seed, dtype):
    rng = np.random.default_rng(seed)
    th = rng.uniform(-np.pi, np.pi, N)
    return np.stack([np.cos(th), np.sin(th), rng.uniform(-8, 8, N)], axis=1).astype(dtype)


step_op = st.tuples(st.just("step"), st.lists(st.sampled_from(ROW_KINDS), min_size=N, max_size=N),
                    st.lists(st.booleans(), min_size=N, max_size=N),
                    st.lists(st.floats(-5, 5, width=32), min_size=N, max_size=N),
                    st.integers(0, 2**16), st.sampled_from([np.float32, np.float64]), st.booleans())
bad_batch_op = st.tuples(st.just("bad_batch"), st.sampled_from(["shape", "dtype", "flag_value", "flag_type", "flag_count"]),
                         st.lists(st.booleans(), min_size=N, max_size=N))
reset_op = st.tuples(st.just("reset"), st.one_of(st.none(), st.integers(0, N - 1)),
                     st.one_of(st.none(), st.floats(-100, 100, width=32)))
ops = st.lists(st.one_of(step_op, step_op, step_op, bad_batch_op, reset_op, st.just(("snapshot",)),
                         st.tuples(st.just("restore"), st.integers(0, 7))), min_size=1, max_size=30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, fake):
    from lram.runtime.policy import Policy

    manifest = fake.make_manifest(obs_dim=3, act_dim=1, low=LOW, high=HIGH, obs_low=[-1.0, -1.0, -8.0],
                                  obs_high=[1.0, 1.0, 8.0], target_return=TARGET)
    path = fake.write_fake_policy(tmp_path_factory.mktemp("prop") / "p.onnx", manifest, seed=3)
    policy = Policy.load(path, n_robots=N, backend="ort-cpu", threads=1, miss_policy="hold")
    yield policy, policy.snapshot(), path, manifest
    policy.close()


def _assert_same(p, ref):
    for k, a in ref.state.items():
        assert np.array_equal(p.slots.state[k], a), f"state {k}"
    assert np.array_equal(p.slots.pending_first, ref.pending)
    assert np.array_equal(p.returns.collected, ref.collected)
    assert np.array_equal(p.returns.target, ref.target)
    assert np.array_equal(p.safe.last, ref.last)


@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_every_row_equals_a_reference_that_saw_only_its_good_inputs(setup, ops):
    p, fresh, path, manifest = setup
    p.restore(fresh)
    ref = Reference(path, manifest)
    snaps = []
    for op in ops:
        kind = op[0]
        if kind == "step":
            _, rows, first, rewards, seed, dtype, strict = op
            obs = _obs(seed, dtype)
            reward = np.array(rewards, np.float32).reshape(N, 1)
            for i, r in enumerate(rows):
                if r == "nan_obs":
                    obs[i, seed % 3] = np.nan
                elif r == "inf_obs":
                    obs[i, 1] = -np.inf
                elif r == "out_of_range":
                    obs[i, 2] = 9.0
                elif r == "huge_float64":
                    obs[i, 0] = 1e300 if dtype == np.float64 else 9.0
                elif r == "nan_reward":
                    reward[i, 0] = np.nan
            good = np.array([r == "good" for r in rows])
            first = np.array(first)
            if strict and not good.all():  # strict refuses the whole call before anything is committed
                with pytest.raises(InputRejected):
                    p.step(obs, None, reward, first, strict=True)
                _assert_same(p, ref)
                continue
            res = p.step_detailed(obs, None, reward, first, strict=strict)
            with np.errstate(over="ignore"):  # the huge float64 rows are refused; their cast value is unused
                obs32 = obs.astype(np.float32)
            want = ref.step(obs32, reward, first, good) if good.any() else None
            if want is None:
                ref.refused(first)
                want = ref.last
            assert np.array_equal(res.ok, good), (rows, res.rejected)
            assert set(res.rejected) == set(np.flatnonzero(~good).tolist())
            assert np.array_equal(res.action, want)
        elif kind == "bad_batch":
            _, how, first = op
            first = np.array(first)
            obs = _obs(0, np.float32)
            if how == "shape":
                obs = obs[:, :2]
            elif how == "dtype":
                obs = obs.astype(np.int32)
            bad_first = {"flag_value": np.where(first, 2, -1), "flag_type": first.astype(np.float32),
                         "flag_count": first[:2]}.get(how, first)
            res = p.step_detailed(obs, None, 1.0, bad_first)
            assert not res.ok.any() and len(res.rejected) == N
            if how in ("shape", "dtype"):  # the flags were valid: the announced episode starts are kept
                ref.refused(first)
            np.testing.assert_array_equal(res.action, ref.last)
        elif kind == "reset":
            _, slot, target = op
            p.reset(slot, target_return=target)
            ref.reset(slot, target)
        elif kind == "snapshot":
            snaps.append((p.snapshot(), ref.snapshot()))
        elif kind == "restore" and snaps:
            ps, rs = snaps[op[1] % len(snaps)]
            p.restore(ps)
            ref.restore(rs)
        _assert_same(p, ref)
