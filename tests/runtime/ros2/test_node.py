"""The node's tick logic with an in-memory transport and a fake clock: enable/disable, stale input, reset,
several robots, miss policy. Actions are compared bit for bit with the same steps run through Policy."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs cyclonedds (pip install 'lram-deploy[ros2]')")

from lram.runtime.policy import Policy
from lram.runtime.ros2 import messages as m
from lram.runtime.ros2.contract import parse_contract
from lram.runtime.ros2.node import PolicyNode

from .conftest import OBS_DIM, command, contract_dict, expected_obs, joint_msg


class MemoryTransport:
    def __init__(self, n):
        self.inputs = [{} for _ in range(n)]
        self.enable = [[] for _ in range(n)]
        self.resets = [0] * n
        self.actions = [[] for _ in range(n)]
        self.status = [[] for _ in range(n)]

    def take_inputs(self, r):
        out, self.inputs[r] = self.inputs[r], {}
        return out

    def take_enable(self, r):
        out, self.enable[r] = self.enable[r], []
        return out

    def take_reset(self, r):
        out, self.resets[r] = self.resets[r], 0
        return out

    def publish_action(self, r, msg):
        self.actions[r].append(msg)

    def publish_status(self, r, msg):
        self.status[r].append(msg)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def setup(joint_model):
    made = []

    def _make(n=2, edit=None, **kw):
        d = contract_dict(robots=[f"arm{i}" for i in range(n)], **kw)
        if edit is not None:
            edit(d)
        contract = parse_contract(d)
        node_policy = Policy.load(joint_model, n_robots=n, backend="ort-cpu", threads=1)
        twin = Policy.load(joint_model, n_robots=n, backend="ort-cpu", threads=1)
        tr, clock = MemoryTransport(n), Clock()
        node = PolicyNode(node_policy, contract, tr, clock=clock, wall_ns=lambda: 0, timeout_periods=None)
        made.extend([node_policy, twin])
        return node, twin, tr, clock

    yield _make
    for p in made:
        p.close()


def test_disabled_until_enabled_then_bit_exact_per_robot(setup):
    node, twin, tr, clock = setup(n=2)
    seq = 0
    for k in range(3):  # inputs flow, nobody enabled: no command
        seq += 1
        tr.inputs[0]["joints"] = joint_msg(seq, 0)
        node.tick(k)
        clock.t += 0.02
    assert tr.actions == [[], []]
    assert tr.status[0] and tr.status[0][-1].message == "disabled"
    tr.enable[0].append(True)
    sent = []
    for k in range(3, 23):
        seq += 1
        msgs = [joint_msg(seq, 0), joint_msg(seq, 1)]
        tr.inputs[0]["joints"], tr.inputs[1]["joints"] = msgs
        if k == 10:
            tr.enable[1].append(True)
        node.tick(k)
        clock.t += 0.02
        obs = np.full((2, OBS_DIM), np.nan, np.float32)
        obs[0] = expected_obs(msgs[0])
        if k >= 10:
            obs[1] = expected_obs(msgs[1])
        sent.append(twin.step(obs))
    got0 = np.array([msg.data for msg in tr.actions[0]])
    got1 = np.array([msg.data for msg in tr.actions[1]])
    assert got0.shape == (20, 3) and got1.shape == (13, 3)
    want = np.stack(sent)
    np.testing.assert_array_equal(got0, command(want[:, 0]))
    np.testing.assert_array_equal(got1, command(want[7:, 1]))
    assert len(np.unique(got0[:, 0])) > 10  # the actions move: the comparison can fail
    rc = node.counters.robots
    assert (rc[0].ticks, rc[0].ok, rc[0].misses, rc[1].ticks) == (20, 20, 0, 13)


def test_stale_input_is_a_miss_that_holds_and_does_not_advance_state(setup):
    node, twin, tr, clock = setup(n=1, stale_ms=50.0)
    tr.enable[0].append(True)
    seq, want, latest = 0, {}, None
    for k in range(30):
        if not 10 <= k < 16:  # the robot goes quiet for 6 ticks (120 ms against a 50 ms window)
            seq += 1
            latest = tr.inputs[0]["joints"] = joint_msg(seq, 0)
        node.tick(k)
        clock.t += 0.02
        if k not in (12, 13, 14, 15):  # 20 and 40 ms after the last message it is still fresh: stepped again
            want[k] = twin.step(expected_obs(latest)[None])[0]
    data = np.array([msg.data for msg in tr.actions[0]])
    assert len(data) == 30
    rc = node.counters.robots[0]
    assert (rc.stale, rc.misses, rc.ok) == (4, 4, 26)
    for k in (12, 13, 14, 15):  # "hold": the last good command
        np.testing.assert_array_equal(data[k], data[11])
    # the model's state skipped the stale ticks: later actions equal the twin's, which never saw them
    ok = sorted(want)
    np.testing.assert_array_equal(data[ok], command(np.stack([want[k] for k in ok])))


def test_reset_and_reenable_start_new_episodes(setup, joint_model):
    node, twin, tr, clock = setup(n=2)
    tr.enable[0].append(True)
    tr.enable[1].append(True)
    seq, rows = 0, []
    for k in range(24):
        seq += 1
        msgs = [joint_msg(seq, 0), joint_msg(seq, 1)]
        tr.inputs[0]["joints"], tr.inputs[1]["joints"] = msgs
        if k == 8:
            tr.resets[0] += 1
            twin.reset(0)
        if k == 14:
            tr.enable[1].append(False)
        if k == 18:
            tr.enable[1].append(True)
            twin.reset(1)
        node.tick(k)
        clock.t += 0.02
        obs = np.stack([expected_obs(msgs[0]), expected_obs(msgs[1])])
        if 14 <= k < 18:
            obs[1] = np.nan
        rows.append(twin.step(obs))
    want = np.stack(rows)
    np.testing.assert_array_equal(np.array([x.data for x in tr.actions[0]]), command(want[:, 0]))
    live1 = [k for k in range(24) if not 14 <= k < 18]
    np.testing.assert_array_equal(np.array([x.data for x in tr.actions[1]]), command(want[live1, 1]))
    rc = node.counters.robots
    assert (rc[0].resets, rc[1].enables, rc[1].ticks) == (1, 2, 20)
    # the resets mattered: without them the same inputs give other actions
    other = Policy.load(joint_model, n_robots=2, backend="ort-cpu", threads=1)
    plain = np.stack([other.step(np.stack([expected_obs(joint_msg(q, 0)), expected_obs(joint_msg(q, 1))])) for q in range(1, 25)])
    other.close()
    assert not np.array_equal(plain[8:, 0], want[8:, 0])


def test_missing_joint_is_rejected_and_stop_policy_disables(setup):
    node, twin, tr, clock = setup(n=1, miss_policy="stop")
    tr.enable[0].append(True)
    for k in range(3):
        tr.inputs[0]["joints"] = joint_msg(k + 1, 0)
        node.tick(k)
        clock.t += 0.02
    tr.inputs[0]["joints"] = joint_msg(9, 0, drop="elbow")
    node.tick(3)
    rc = node.counters.robots[0]
    assert (rc.rejected, rc.enabled) == (1, False)
    np.testing.assert_array_equal(tr.actions[0][-1].data, command(np.zeros(3, np.float32)))  # the neutral command
    tr.inputs[0]["joints"] = joint_msg(10, 0)
    node.tick(4)
    assert len(tr.actions[0]) == 4  # disabled: nothing more until enabled again
    node._status(clock.t, force=True)
    status = {kv.key: kv.value for kv in tr.status[0][-1].values}
    assert status["rejected"] == "1" and status["enabled"] == "false" and status["ticks"] == "4"


def test_reward_topic_counts_each_reward_once(setup):
    def with_reward(d):
        d["inputs"]["reward"] = {"topic": "reward", "type": "std_msgs/msg/Float64"}
        d["reward"] = {"input": "reward", "field": "data", "scale": 2.0}

    node, twin, tr, clock = setup(n=1, edit=with_reward)
    tr.enable[0].append(True)
    want = []
    for k in range(12):
        msg = joint_msg(k + 1, 0)
        tr.inputs[0]["joints"] = msg
        r = 0.0
        if k in (3, 4, 8):
            tr.inputs[0]["reward"] = m.Float64(1.5 + k)
            r = 2.0 * (1.5 + k)
        node.tick(k)
        clock.t += 0.02
        want.append(twin.step(expected_obs(msg)[None], prev_reward=np.float32(r))[0])
    np.testing.assert_array_equal(np.array([x.data for x in tr.actions[0]]), command(np.stack(want)))


def test_run_on_the_real_clock_answers_a_stalled_backend_with_the_miss_policy(joint_model, helpers):
    """``run``: absolute deadlines, the watchdog (one period), a stalled inference costs safe commands only."""
    from lram.runtime.backends import make_backend
    from lram.runtime.manifest import Manifest

    class Always(MemoryTransport):
        seq = 0

        def take_inputs(self, r):
            self.seq += 1
            return {"joints": joint_msg(self.seq, r)}

    inner = make_backend(joint_model, "ort-cpu", 1)
    stalled = helpers.ScriptedBackend(inner, stall_on={3}, stall_s=0.2)
    manifest = Manifest.from_json(inner.metadata["lram.manifest"])
    policy = Policy(stalled, manifest, n_robots=1)
    tr = Always(1)
    node = PolicyNode(policy, parse_contract(contract_dict(robots=["arm0"], hz=50.0)), tr)
    tr.enable[0].append(True)
    counters = node.run(max_ticks=20, warmup=0)
    rc = counters.robots[0]
    assert counters.ticks == 20 and rc.ticks == 20 and len(tr.actions[0]) == 20
    assert rc.timeout >= 1 and rc.ok + rc.timeout == 20 and rc.ok >= 5
    assert tr.status[0][-1].message == "disabled"  # the last status says the node let go
    policy.close()
