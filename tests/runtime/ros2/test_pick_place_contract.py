"""The shipped contract with the shipped policy: Meta-World's observation arrives as ROS messages (poses, a
gripper joint, a goal sent once), the node rebuilds the 39 values including the frame stack, and its commands
equal the ones Policy gives on the simulator's own observation, closed loop."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs cyclonedds (pip install 'lram-deploy[ros2]')")
torch = pytest.importorskip("torch")
pytest.importorskip("metaworld")

from lram.export.onnx_export import export_onnx
from lram.model.checkpoint import load_checkpoint
from lram.runtime.sim import make_sim
from lram.runtime.policy import Policy
from lram.runtime.ros2 import messages as m
from lram.runtime.ros2.contract import load_contract
from lram.runtime.ros2.node import PolicyNode
from lram.runtime.ros2.starter import META_WORLD

from .test_node import Clock, MemoryTransport

REF = Path(__file__).resolve().parents[3] / "model" / "reference" / "pick-place-v3"


def as_messages(obs, with_goal):
    """What a robot would publish for this Meta-World observation (the contract's file, read backwards)."""
    pose = lambda p, q=(0.0, 0.0, 0.0, 1.0): m.PoseStamped(m.Header(), m.Pose(m.Point(*p), m.Quaternion(*q)))  # noqa: E731
    msgs = {"ee": pose(obs[0:3]), "object": pose(obs[4:7], obs[7:11]),
            "gripper": m.JointState(m.Header(), ["gripper_finger_joint"], [obs[3] * 0.1], [], [])}
    if with_goal:
        msgs["goal"] = pose(obs[36:39])
    return msgs


@pytest.mark.slow
def test_shipped_contract_reproduces_meta_world_closed_loop(tmp_path):
    torch.set_num_threads(1)
    graph = export_onnx(load_checkpoint(REF), tmp_path / "pick-place-v3.onnx")
    contract = load_contract(META_WORLD)
    node_policy = Policy.load(graph, n_robots=1, backend="ort-cpu", threads=1)
    twin = Policy.load(graph, n_robots=1, backend="ort-cpu", threads=1)
    tr, clock = MemoryTransport(1), Clock()
    node = PolicyNode(node_policy, contract, tr, clock=clock, wall_ns=lambda: 0, timeout_periods=None)
    env = make_sim("metaworld:pick-place-v3", seed=10_000)
    obs = env.reset(10_000)
    a = contract.action
    tr.enable[0].append(True)
    try:
        for k in range(60):
            tr.inputs[0] = as_messages(obs, with_goal=k == 0)  # the goal comes once (transient local, never stale)
            node.tick(k)
            clock.t += contract.period
            want = twin.step(obs[None].astype(np.float32))[0]
            got = np.asarray(tr.actions[0][-1].data)
            np.testing.assert_array_equal(got, np.clip(a.offset + a.scale * want.astype(np.float64), a.low, a.high))
            obs = env.step(want).obs
        assert node.counters.robots[0].ok == 60
    finally:
        env.close()
        node_policy.close()
        twin.close()
