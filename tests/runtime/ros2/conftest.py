"""Fixtures for the ROS 2 node tests: a small perturbed policy, its contract, a loopback-only DDS config."""
from __future__ import annotations

import os

import numpy as np
import pytest


OBS_DIM, ACT_DIM = 6, 3
JOINTS = ["shoulder", "elbow", "wrist"]
ACTION_OFFSET = [0.1, 0.0, -0.1]
ACTION_SCALE = [2.0, 1.5, 1.0]


def contract_dict(robots=("",), hz=50.0, stale_ms=100.0, domain=0, miss_policy="hold", action_type="std_msgs/msg/Float64MultiArray"):
    return {
        "format": "lram-ros2-contract", "format_version": 1, "node": "lram_policy", "domain_id": domain,
        "control_hz": hz, "stale_after_ms": stale_ms, "miss_policy": miss_policy, "robots": list(robots),
        "status_period_ms": 100,
        "inputs": {"joints": {"topic": "joint_states", "type": "sensor_msgs/msg/JointState"}},
        "observation": [
            {"input": "joints", "field": "position", "joints": JOINTS},
            {"input": "joints", "field": "velocity", "joints": JOINTS[:2], "scale": 0.5},
            {"value": [0.25]},
        ],
        "action": {"topic": "joint_commands", "type": action_type, "joints": ["j1", "j2", "j3"],
                   "scale": ACTION_SCALE, "offset": ACTION_OFFSET, "low": [-2.0, -1.0, -1.0], "high": [2.0, 1.0, 1.0]},
    }


def joint_msg(seq, robot, drop=None):
    """Joints in another order than the contract's, plus one it does not use: matched by name."""
    names = ["gripper", "wrist", "shoulder", "elbow"]
    rng = np.random.default_rng(1000 * robot + seq)
    pos, vel = rng.uniform(-1.5, 1.5, 4), rng.uniform(-2, 2, 4)
    keep = [i for i, n in enumerate(names) if n != drop]
    from lram.runtime.ros2 import messages as m

    return m.JointState(m.Header(m.Time(seq, robot)), [names[i] for i in keep], pos[keep].tolist(), vel[keep].tolist(), [])


def expected_obs(msg):
    """The contract's layout written out by hand: positions by name, half the first two velocities, 0.25."""
    idx = {n: i for i, n in enumerate(msg.name)}
    pos = [msg.position[idx[j]] for j in JOINTS]
    vel = [(msg.velocity[idx[j]] - 0.0) * 0.5 for j in JOINTS[:2]]
    return np.asarray(pos + vel + [0.25], dtype=np.float32)


def command(action):
    return np.clip(np.asarray(ACTION_OFFSET) + np.asarray(ACTION_SCALE) * action.astype(np.float64), [-2, -1, -1], [2, 1, 1])


@pytest.fixture(scope="session")
def joint_model(tmp_path_factory, fake):
    """6 observation values from a JointState, 3 joint commands: a perturbed recurrent graph."""
    path = tmp_path_factory.mktemp("ros2_models") / "joints.onnx"
    return fake.write_fake_policy(path, fake.make_manifest(obs_dim=OBS_DIM, act_dim=ACT_DIM, low=-1.0, high=1.0,
                                                           target_return=10.0), seed=3)


@pytest.fixture(scope="session")
def loopback_dds(tmp_path_factory):
    """CYCLONEDDS_URI for loopback only, unicast discovery: no traffic leaves the machine."""
    path = tmp_path_factory.mktemp("dds") / "loopback.xml"
    path.write_text('<CycloneDDS><Domain id="any"><General><Interfaces><NetworkInterface name="lo"/></Interfaces>'
                    "<AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto</ParticipantIndex>"
                    "<MaxAutoParticipantIndex>30</MaxAutoParticipantIndex><Peers><Peer address=\"127.0.0.1\"/></Peers>"
                    "</Discovery></Domain></CycloneDDS>")
    return f"file://{path}"


@pytest.fixture(scope="session")
def domain_id():
    """One domain per test run, so parallel runs on one machine do not hear each other."""
    return 1 + os.getpid() % 200
