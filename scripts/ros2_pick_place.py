"""The shipped policy driven through the ROS 2 node's logic (shipped contract, in-memory transport instead of DDS)
in Meta-World pick-place: success with no reward topic (the shipped contract) and with one.

Usage: .venv/bin/python scripts/ros2_pick_place.py [EPISODES]   (seeds 10000.., never used in training)
"""
import copy
import sys
import tempfile
import warnings

import numpy as np
import torch

warnings.simplefilter("ignore"); torch.set_num_threads(1)
from lram.export.onnx_export import export_onnx
from lram.model.checkpoint import load_checkpoint
from lram.runtime.sim import make_sim
from lram.runtime.policy import Policy
from lram.runtime.ros2 import messages as m
from lram.runtime.ros2.contract import parse_contract
from lram.runtime.ros2.node import PolicyNode
from lram.runtime.ros2.starter import META_WORLD
import yaml

EPISODES = int(sys.argv[1]) if len(sys.argv) > 1 else 10
graph = export_onnx(load_checkpoint("model/reference/pick-place-v3"), tempfile.mkdtemp() + "/pp.onnx")


class Memory:
    def __init__(self): self.inputs, self.enable, self.resets, self.last = {}, [], 0, None
    def take_inputs(self, r): out, self.inputs = self.inputs, {}; return out
    def take_enable(self, r): out, self.enable = self.enable, []; return out
    def take_reset(self, r): out, self.resets = self.resets, 0; return out
    def publish_action(self, r, msg): self.last = msg
    def publish_status(self, r, msg): pass


def pose(p, q=(0.0, 0.0, 0.0, 1.0)):
    return m.PoseStamped(m.Header(), m.Pose(m.Point(*p), m.Quaternion(*q)))


def run(with_reward):
    data = yaml.safe_load(META_WORLD.read_text())
    if with_reward:
        data = copy.deepcopy(data)
        data["inputs"]["reward"] = {"topic": "reward", "type": "std_msgs/msg/Float64"}
        data["reward"] = {"input": "reward", "field": "data"}
    c = parse_contract(data)
    tr, t = Memory(), [0.0]
    node = PolicyNode(Policy.load(graph, 1, backend="ort-cpu", threads=1), c, tr, clock=lambda: t[0], wall_ns=lambda: 0,
                      timeout_periods=None)
    env = make_sim("metaworld:pick-place-v3", seed=10_000)
    wins, k = 0, 0
    for ep in range(EPISODES):
        obs, reward, success = env.reset(10_000 + ep), 0.0, False
        tr.enable.append(True) if ep == 0 else None
        tr.resets += ep > 0
        for step in range(env.max_steps):
            tr.inputs = {"ee": pose(obs[0:3]), "object": pose(obs[4:7], obs[7:11]), "goal": pose(obs[36:39]),
                         "gripper": m.JointState(m.Header(), ["gripper_finger_joint"], [obs[3] * 0.1], [], []),
                         "reward": m.Float64(reward)}
            node.tick(k); k += 1; t[0] += c.period
            action = (np.asarray(tr.last.data) - c.action.offset) / c.action.scale
            res = env.step(action.astype(np.float32))
            obs, reward = res.obs, res.reward
            if res.success:
                success = True
                break
        wins += success
    env.close()
    rc = node.counters.robots[0]
    print(f"{'reward topic' if with_reward else 'no reward topic (shipped contract)'}: success {wins}/{EPISODES}, "
          f"{rc.ticks} ticks, {rc.misses} misses")


run(with_reward=False)
run(with_reward=True)
