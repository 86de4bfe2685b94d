"""The contract: the shipped pick-place file, one-line errors, topic names, observation and action mapping."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs cyclonedds (pip install 'lram-deploy[ros2]')")

from lram.runtime.ros2 import messages as m
from lram.runtime.ros2.contract import ContractError, dds_topic, load_contract, parse_contract
from lram.runtime.ros2.mapping import ActionEncoder, ObservationBuilder
from lram.runtime.ros2.starter import META_WORLD

from .conftest import contract_dict


def test_shipped_pick_place_contract_fits_a_meta_world_policy(fake):
    c = load_contract(META_WORLD)
    assert c.obs_size == 39 and c.control_hz == 50 and c.robots == ("",)
    c.check_against(fake.make_manifest(obs_dim=39, act_dim=4, low=-1.0, high=1.0))
    assert c.topic(0, "joint_states") == "rt/joint_states"
    assert c.control_topic(0, "enable") == "rt/lram_policy/enable"
    with pytest.raises(ContractError, match="fills 39 values but the policy takes 6"):
        c.check_against(fake.make_manifest(obs_dim=6, act_dim=4))
    with pytest.raises(ContractError, match="action.scale has 4 values but the policy's action has 3"):
        c.check_against(fake.make_manifest(obs_dim=39, act_dim=3))


def test_pick_place_observation_layout_from_messages():
    c = load_contract(META_WORLD)
    b = ObservationBuilder(c)
    hdr = m.Header()
    msgs = {"ee": m.PoseStamped(hdr, m.Pose(m.Point(0.1, 0.6, 0.2))),
            "gripper": m.JointState(hdr, ["other", "gripper_finger_joint"], [9.0, 0.05], [], []),
            "object": m.PoseStamped(hdr, m.Pose(m.Point(0.0, 0.7, 0.02), m.Quaternion(0.0, 0.0, 0.6, 0.8))),
            "goal": m.PoseStamped(hdr, m.Pose(m.Point(0.05, 0.8, 0.25)))}
    first = b.build(msgs)
    want = np.r_[0.1, 0.6, 0.2, 0.5, 0.0, 0.7, 0.02, 0.0, 0.0, 0.6, 0.8, np.zeros(7)]
    np.testing.assert_allclose(first[:18], want)
    np.testing.assert_array_equal(first[18:36], first[:18])  # no history yet: the current frame, like the env
    np.testing.assert_allclose(first[36:], [0.05, 0.8, 0.25])
    msgs["ee"] = m.PoseStamped(hdr, m.Pose(m.Point(0.2, 0.6, 0.2)))
    second = b.build(msgs)
    assert second[0] == 0.2 and second[18] == 0.1  # the previous frame is the last tick's
    b.reset()
    assert b.build(msgs)[18] == 0.2


def test_imu_twist_and_sequence_fields():
    d = contract_dict()
    d["inputs"] = {"imu": {"topic": "imu", "type": "sensor_msgs/msg/Imu"},
                   "cmd": {"topic": "cmd_vel", "type": "geometry_msgs/msg/Twist"},
                   "arr": {"topic": "extra", "type": "std_msgs/msg/Float64MultiArray"},
                   "vec": {"topic": "lin_acc", "type": "geometry_msgs/msg/Vector3"}}
    d["observation"] = [{"input": "imu", "field": "angular_velocity"}, {"input": "imu", "field": "orientation"},
                        {"input": "cmd", "field": "linear.x", "offset": 1.0, "scale": 2.0},
                        {"input": "arr", "field": "data", "index": [2, 0]}, {"input": "vec"}]
    c = parse_contract(d)
    assert [e.width for e in c.observation] == [3, 4, 1, 2, 3]
    row = ObservationBuilder(c).build({
        "imu": m.Imu(angular_velocity=m.Vector3(1, 2, 3), orientation=m.Quaternion(0.1, 0.2, 0.3, 0.9)),
        "cmd": m.Twist(linear=m.Vector3(1.5, 0, 0)), "arr": m.Float64MultiArray(data=[7.0, 8.0]),
        "vec": m.Vector3(4, 5, 6)})
    np.testing.assert_array_equal(row, [1, 2, 3, 0.1, 0.2, 0.3, 0.9, 1.0, np.nan, 7.0, 4, 5, 6])  # index 2 absent: NaN


def test_joint_trajectory_command():
    c = parse_contract(contract_dict(hz=40.0, action_type="trajectory_msgs/msg/JointTrajectory"))
    msg = ActionEncoder(c).message(np.array([0.5, -1.0, 1.0], np.float32), 1_500_000_123)
    assert msg.joint_names == ["j1", "j2", "j3"] and msg.header.stamp == m.Time(1, 500_000_123)
    assert msg.points[0].positions == [1.1, -1.0, 0.9]  # 0.1 + 2 * 0.5, clipped to -1, -0.1 + 1
    assert msg.points[0].time_from_start == m.Duration(0, 25_000_000)


def test_topic_names():
    assert dds_topic("", "joint_states") == "rt/joint_states"
    assert dds_topic("arm_a", "joint_states") == "rt/arm_a/joint_states"
    assert dds_topic("/arm_a/", "lram_policy/enable") == "rt/arm_a/lram_policy/enable"
    assert dds_topic("arm_a", "/clock") == "rt/clock"


def _broken(edit):
    d = copy.deepcopy(contract_dict())
    edit(d)
    return d


BROKEN = {
    "format": (lambda d: d.update(format="other"), "not an lram ROS 2 contract"),
    "no inputs": (lambda d: d.pop("inputs"), "inputs is missing"),
    "unknown type": (lambda d: d["inputs"]["joints"].update(type="sensor_msgs/msg/Image"), "is not supported"),
    "unknown input": (lambda d: d["observation"][0].update(input="imu"), "is not one of the inputs"),
    "no joints": (lambda d: d["observation"][0].pop("joints"), "say which values with joints: or index:"),
    "no field": (lambda d: d["observation"][0].pop("field"), "a JointState entry needs field"),
    "bad field": (lambda d: d["observation"][0].update(field="torque"), "has no numeric field 'torque'"),
    "bad previous": (lambda d: d["observation"].insert(0, {"previous": [0, 3]}), "previous must be [start, stop]"),
    "scale width": (lambda d: d["observation"][1].update(scale=[1, 2, 3]), "scale has 3 values for a field of 2"),
    "trajectory joints": (lambda d: d["action"].update(type="trajectory_msgs/msg/JointTrajectory", joints=None),
                          "action.joints is required"),
    "hz": (lambda d: d.update(control_hz=0), "control_hz must be a positive number"),
    "domain": (lambda d: d.update(domain_id=300), "domain_id must be an integer in 0..232"),
    "robots": (lambda d: d.update(robots=["a", "a"]), "two robots share a namespace"),
    "qos": (lambda d: d["inputs"]["joints"].update(qos={"reliability": "sometimes"}), "reliability must be one of"),
    "stale": (lambda d: d["inputs"]["joints"].update(stale_after_ms=-1), "stale_after_ms must be a positive number"),
    "miss": (lambda d: d.update(miss_policy="panic"), "miss_policy 'panic' is not one of"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_errors_are_one_line(case, tmp_path):
    edit, text = BROKEN[case]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_broken(edit)))
    with pytest.raises(ContractError) as e:
        load_contract(path)
    assert text in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ContractError, match="no such contract file"):
        load_contract(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("inputs: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML") as e:
        load_contract(tmp_path / "bad.yaml")
    assert "\n" not in str(e.value)
