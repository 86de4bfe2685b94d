"""Every message the node speaks, byte for byte against rosbags' CDR (ROS 2's own definitions, another codebase)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs cyclonedds (pip install 'lram-deploy[ros2]')")

from lram.runtime.ros2 import messages as m

rosbags_typesys = pytest.importorskip("rosbags.typesys")
STORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)


def to_rosbags(msg, ros_type):
    """The same message as a rosbags object, walked along rosbags' own field definitions (names, order, kinds)."""
    kwargs = {}
    for name, (kind, spec) in STORE.fielddefs[ros_type][1]:
        v = getattr(msg, name)
        if kind.name == "NAME":
            kwargs[name] = to_rosbags(v, spec)
        elif kind.name in ("SEQUENCE", "ARRAY"):
            (inner_kind, inner), _ = spec
            if inner_kind.name == "NAME":
                kwargs[name] = [to_rosbags(x, inner) for x in v]
            elif inner[0] == "string":
                kwargs[name] = list(v)
            else:
                kwargs[name] = np.asarray(v, dtype=np.dtype(inner[0].replace("byte", "uint8")))
        else:
            kwargs[name] = v
    return STORE.types[ros_type](**kwargs)


def stamp(s=17, ns=250_000_000):
    return m.Header(stamp=m.Time(s, ns), frame_id="base_link")


SAMPLES = [
    m.Time(3, 4), m.Duration(-1, 999), m.Header(m.Time(5, 6), "odom"), m.Bool(True), m.Empty(), m.Float64(-2.5),
    m.Float64MultiArray(layout=m.MultiArrayLayout(dim=[m.MultiArrayDimension("action", 4, 4)], data_offset=0),
                        data=[0.1, -0.2, 0.3, 1.0]),
    m.Vector3(1.0, 2.0, 3.0), m.Quaternion(0.0, 0.6, 0.0, 0.8), m.Point(-1.0, 0.5, 2.0),
    m.PoseStamped(stamp(), m.Pose(m.Point(0.1, 0.2, 0.3), m.Quaternion(0.0, 0.0, 0.6, 0.8))),
    m.Twist(m.Vector3(0.5, 0.0, 0.0), m.Vector3(0.0, 0.0, -0.3)),
    m.JointState(stamp(), ["wrist", "shoulder", "elbow"], [0.1, -1.2, 2.5], [0.0, 0.3, -0.4], []),
    m.Imu(stamp(), m.Quaternion(0.1, 0.2, 0.3, 0.9), [0.01] * 9, m.Vector3(0.1, -0.2, 0.3), [0.02] * 9,
          m.Vector3(0.0, 0.0, 9.81), [0.03] * 9),
    m.JointTrajectory(stamp(), ["j1", "j2"], [m.JointTrajectoryPoint([0.5, -0.5], [], [], [], m.Duration(0, 20_000_000))]),
    m.MultiArrayDimension("x", 3, 3), m.MultiArrayLayout([m.MultiArrayDimension("y", 2, 2)], 1),
    m.Pose(m.Point(1.0, 2.0, 3.0)), m.JointTrajectoryPoint([1.0], [2.0], [3.0], [4.0], m.Duration(1, 2)),
    m.KeyValue("k", "v"),
    m.DiagnosticStatus(1, "lram_policy/robot0", "enabled", "slot 0", [m.KeyValue("ticks", "12"), m.KeyValue("stale", "3")]),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda s: type(s).__name__)
def test_cdr_matches_rosbags(msg):
    ros_type = next(k for k, v in m.TYPES.items() if v is type(msg))
    theirs = bytes(STORE.serialize_cdr(to_rosbags(msg, ros_type), ros_type))
    assert msg.serialize() == theirs
    assert type(msg).deserialize(theirs) == msg


def test_every_type_is_sampled_and_named_like_ros():
    assert {type(s) for s in SAMPLES} == set(m.TYPES.values())
    for ros_type, cls in m.TYPES.items():
        pkg, _, name = ros_type.split("/")
        assert cls.__idl_typename__ == f"{pkg}::msg::dds_::{name}_"
        assert ros_type in STORE.types  # a real ROS 2 message
        assert cls.__idl_annotations__.get("extensibility") == "final"
