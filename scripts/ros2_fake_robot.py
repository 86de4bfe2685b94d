"""A stand-in pick-place robot for trying `lram serve` without a robot or ROS: publishes the shipped contract's
inputs (fixed poses, the goal once), enables the node, counts its commands and prints its last status.

Usage (two shells, same CYCLONEDDS_URI / domain):
    lram serve pick-place-v3.onnx --ros2 pick-place-v3.ros2.yaml
    .venv/bin/python scripts/ros2_fake_robot.py pick-place-v3.ros2.yaml [SECONDS]
"""
import sys
import time

from lram.runtime.ros2 import messages as m
from lram.runtime.ros2.contract import QosSpec, load_contract
from lram.runtime.ros2.transport import Endpoints, take_all

c = load_contract(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
ep = Endpoints(c.domain_id)
w = {n: ep.writer(c.topic(0, s.topic), m.TYPES[s.type], s.qos if n == "goal" else QosSpec()) for n, s in c.inputs.items()}
enable = ep.writer(c.control_topic(0, "enable"), m.Bool, QosSpec())
cmd = ep.reader(c.topic(0, c.action.topic), m.TYPES[c.action.type], QosSpec(depth=100))
status = ep.reader(c.control_topic(0, "status"), m.DiagnosticStatus, QosSpec(depth=100))


def pose(p, q=(0.0, 0.0, 0.0, 1.0)):
    return m.PoseStamped(m.Header(), m.Pose(m.Point(*p), m.Quaternion(*q)))


w["goal"].write(pose((0.05, 0.8, 0.25)))  # once: the contract's goal input is transient-local and never stale
got, last, t0 = [], None, time.monotonic()
while time.monotonic() - t0 < seconds:
    w["ee"].write(pose((0.0, 0.6, 0.2)))
    w["object"].write(pose((0.0, 0.7, 0.02)))
    w["gripper"].write(m.JointState(m.Header(), ["gripper_finger_joint"], [0.1], [], []))
    if time.monotonic() - t0 > 2 and not got:  # volatile topic: repeat until the node answers
        enable.write(m.Bool(True))
    got += [time.monotonic() for _ in take_all(cmd, 100)]
    last = (take_all(status, 100) or [last])[-1]
    time.sleep(0.01)
window = min(2.0, seconds / 3)
print(f"commands: {len(got)}, rate over the last {window:g} s: {sum(t > t0 + seconds - window for t in got) / window:.1f}/s")
print({kv.key: kv.value for kv in last.values} if last else "no status from the node")
