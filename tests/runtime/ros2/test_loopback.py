"""Two processes on loopback DDS: this test is a fake robot (two arms, JointState at 200 Hz, joints in another
order than the contract's) and ``lram serve --ros2`` is the policy node. Checks the action rate (loosely: the
CI machine is small and shared), the stale-input path, reset, enable/disable, a node killed with SIGKILL and
started again, and a clean SIGTERM. Actions are compared bit for bit with the same steps run through Policy,
from the joint states this robot sent (the node's per-tick record says which message each tick used).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs cyclonedds (pip install 'lram-deploy[ros2]')")

from lram.runtime.policy import Policy
from lram.runtime.ros2 import messages as m
from lram.runtime.ros2.contract import QosSpec, parse_contract
from lram.runtime.ros2.transport import Endpoints, take_all

from .conftest import OBS_DIM, command, contract_dict, expected_obs, joint_msg

HZ = 50.0
ROBOTS = ["arm_a", "arm_b"]


def wait_for(cond, timeout, what, proc=None, log=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the node exited ({proc.returncode}) while waiting for {what}:\n{log.read_text() if log else ''}")
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}" + (f"\nnode output:\n{log.read_text()}" if log else ""))


class FakeRobot:
    """Publishes each arm's joint states at 200 Hz on absolute deadlines; collects commands and status."""

    def __init__(self, contract):
        self.c = contract
        ep = Endpoints(contract.domain_id)
        ctrl, deep = contract.control_qos, QosSpec("reliable", "volatile", 200)
        self.joints = [ep.writer(contract.topic(r, "joint_states"), m.JointState, QosSpec()) for r in range(2)]
        self.enable = [ep.writer(contract.control_topic(r, "enable"), m.Bool, ctrl) for r in range(2)]
        self.reset = [ep.writer(contract.control_topic(r, "reset"), m.Empty, ctrl) for r in range(2)]
        self.cmd = [ep.reader(contract.topic(r, "joint_commands"), m.Float64MultiArray, deep) for r in range(2)]
        self.stat = [ep.reader(contract.control_topic(r, "status"), m.DiagnosticStatus, deep) for r in range(2)]
        self.sent = {}  # (robot, seq) -> JointState
        self.quiet = [False, False]
        self.actions = [[], []]  # (arrival time, data)
        self.status = [[], []]
        self.seq = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._publish, daemon=True), threading.Thread(target=self._collect, daemon=True)]
        for t in self._threads:
            t.start()

    def _publish(self):
        t0, k = time.monotonic(), 0
        while not self._stop.is_set():
            self.seq += 1
            for r in range(2):
                if not self.quiet[r]:
                    msg = joint_msg(self.seq, r)
                    self.sent[(r, self.seq)] = msg
                    self.joints[r].write(msg)
            k += 1
            self._stop.wait(max(0.0, t0 + k * 0.005 - time.monotonic()))

    def _collect(self):
        while not self._stop.is_set():
            now = time.monotonic()
            for r in range(2):
                self.actions[r] += [(now, list(s.data)) for s in take_all(self.cmd[r], 200)]
                self.status[r] += [{kv.key: kv.value for kv in s.values} | {"message": s.message}
                                   for s in take_all(self.stat[r], 200)]
            time.sleep(0.005)

    def count(self, r, since):
        return sum(1 for t, _ in self.actions[r] if t >= since)

    def switch(self, r, on, proc, log):
        """Publish enable/disable until the commands start or stop (a volatile topic: the first may be lost)."""
        quiet_s = 0.1 if on else 0.4  # "stopped" must outlast a stall of a loaded machine

        def flowing():
            return self.count(r, time.monotonic() - quiet_s) > 0
        end = time.monotonic() + 20
        while flowing() != on and time.monotonic() < end:
            self.enable[r].write(m.Bool(on))
            time.sleep(0.15)
            if proc.poll() is not None:
                pytest.fail(f"the node exited:\n{log.read_text()}")
        assert flowing() == on, f"robot {r} did not {'start' if on else 'stop'}"

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(2)


def start_node(model, contract_path, record, log, env):
    return subprocess.Popen([sys.executable, "-m", "lram.cli.main", "serve", str(model), "--ros2", str(contract_path),
                             "--record", str(record)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def check_record(record, robot, model, n_restarts):
    """Replay the node's ticks through a fresh Policy from the messages the robot sent: every command exact."""
    twin = Policy.load(model, n_robots=2, backend="ort-cpu", threads=1)
    per_slot = {0: [], 1: []}
    restarts = {0: 0, 1: 0}
    last_cmd, pending = {}, set()
    try:
        for line in record.read_text().splitlines():
            tick = json.loads(line)
            for r in tick["restarted"]:  # enable or reset: a new episode, nothing held from the old one
                twin.reset(r)
                last_cmd.pop(r, None)
                restarts[r] += 1
                pending.add(r)
            obs = np.full((2, OBS_DIM), np.nan, np.float32)
            for row in tick["robots"]:
                r = row["slot"]
                if row["status"] == "ok":
                    sec, ns = row["stamps"]["joints"]
                    assert ns == r  # the stamp says which arm sent it
                    obs[r] = expected_obs(robot.sent[(r, sec)])
                    np.testing.assert_array_equal(np.asarray(row["obs"], np.float32), obs[r])
                    assert row["first"] == (r in pending)  # the graph saw first=True on the episode's first step
                    pending.discard(r)
                else:  # a loaded machine may also make an inference overrun its period ("timeout")
                    assert row["status"] in ("stale", "timeout"), row
            action = twin.step(obs)
            for row in tick["robots"]:
                r = row["slot"]
                want = command(action[r]) if row["status"] == "ok" else last_cmd.get(r, command(np.zeros(3, np.float32)))
                np.testing.assert_array_equal(np.asarray(row["command"]), want)
                last_cmd[r] = want
                per_slot[r].append(row["command"])
    finally:
        twin.close()
    assert restarts == n_restarts
    return per_slot


def same_commands(received, recorded, killed=False):
    got = [d for _, d in received]
    if killed:  # SIGKILL can land between publishing a command and recording it, or before it leaves
        n = min(len(got), len(recorded))
        assert abs(len(got) - len(recorded)) <= 1 and got[:n] == recorded[:n]
    else:
        assert got == recorded
    assert len({tuple(d) for d in recorded}) > len(recorded) // 2  # commands move: the comparison can fail


def test_policy_node_over_loopback_dds(tmp_path, joint_model, loopback_dds, domain_id, monkeypatch):
    monkeypatch.setenv("CYCLONEDDS_URI", loopback_dds)
    data = contract_dict(robots=ROBOTS, hz=HZ, stale_ms=100.0, domain=domain_id)
    contract_path = tmp_path / "joints.ros2.json"
    contract_path.write_text(json.dumps(data))
    contract = parse_contract(data)
    env = {**os.environ, "CYCLONEDDS_URI": loopback_dds, "OMP_NUM_THREADS": "1"}
    robot = FakeRobot(contract)
    rec_a, log_a = tmp_path / "a.jsonl", tmp_path / "a.log"
    node = start_node(joint_model, contract_path, rec_a, log_a, env)
    try:
        wait_for(lambda: robot.status[0], 60, "the node's first status", node, log_a)
        time.sleep(0.3)
        assert robot.actions == [[], []], "a node must start disabled"
        assert robot.status[0][-1]["message"] == "disabled"

        # enable arm_a: commands at the control rate
        robot.switch(0, True, node, log_a)
        t0 = time.monotonic()
        time.sleep(1.0)
        n = robot.count(0, t0) - robot.count(0, t0 + 1.0)
        print(f"loopback: {n} commands from the node in 1 s at {HZ:g} Hz")
        assert 0.4 * HZ <= n <= 1.2 * HZ, f"{n} commands in 1 s at {HZ} Hz"
        assert robot.actions[1] == []

        # arm_a goes quiet for 0.4 s (> 100 ms): stale misses, commands keep coming (held)
        robot.quiet[0] = True
        t_q = time.monotonic()
        time.sleep(0.4)
        robot.quiet[0] = False
        assert robot.count(0, t_q) >= 0.2 * 0.4 * HZ
        wait_for(lambda: int(robot.status[0][-1].get("stale", 0)) > 0, 5, "a stale count in the status")

        # reset arm_a (reliable topic: wait until the node's reader has matched the writer)
        wait_for(lambda: robot.reset[0].get_matched_subscriptions(), 10, "the reset topic to match")
        robot.reset[0].write(m.Empty())
        wait_for(lambda: robot.status[0][-1].get("resets") == "1", 5, "the reset in the status")

        # arm_b joins, then arm_a is disabled while arm_b goes on
        robot.switch(1, True, node, log_a)
        time.sleep(0.3)
        robot.switch(0, False, node, log_a)
        t_off = time.monotonic()
        time.sleep(0.3)
        assert robot.count(0, t_off) == 0 and robot.count(1, t_off) > 0

        # SIGKILL: commands stop; a new node starts disabled and serves again once enabled
        node.kill()
        node.wait(10)
        time.sleep(0.3)
        t_dead = time.monotonic()
        time.sleep(0.3)
        assert robot.count(1, t_dead) == 0
        split = [len(robot.actions[0]), len(robot.actions[1])]
        robot.status = [[], []]
        rec_b, log_b = tmp_path / "b.jsonl", tmp_path / "b.log"
        node = start_node(joint_model, contract_path, rec_b, log_b, env)
        wait_for(lambda: robot.status[1], 60, "the restarted node's status", node, log_b)
        time.sleep(0.3)
        assert len(robot.actions[1]) == split[1], "a restarted node must start disabled"
        robot.switch(1, True, node, log_b)
        time.sleep(0.5)

        # SIGTERM: a clean exit that says so on the status topic
        node.send_signal(signal.SIGTERM)
        assert node.wait(15) == 0, log_b.read_text()
        wait_for(lambda: robot.status[1] and robot.status[1][-1]["message"] == "disabled", 5, "the final status")
        time.sleep(0.2)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(5)
        robot.close()

    a = check_record(rec_a, robot, joint_model, {0: 2, 1: 1})  # arm_a: enable + reset; arm_b: enable
    b = check_record(rec_b, robot, joint_model, {0: 0, 1: 1})
    same_commands(robot.actions[0][:split[0]], a[0], killed=True)
    same_commands(robot.actions[1][:split[1]], a[1], killed=True)
    same_commands(robot.actions[1][split[1]:], b[1])
    assert robot.actions[0][split[0]:] == [] and b[0] == []
    assert "robot 1:" in log_b.read_text()  # the summary printed on the way out
