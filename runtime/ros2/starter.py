"""A starter contract for an exported policy: the shipped one for Meta-World policies, a joint-space one otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..backends import make_backend
from ..model_files import read_manifest
from .contract import ContractError, FORMAT, FORMAT_VERSION, load_contract

EXAMPLES = Path(__file__).parent / "examples"
META_WORLD = EXAMPLES / "pick-place-v3.ros2.yaml"
META_WORLD_OBS, META_WORLD_ACT = 39, 4


def starter_text(manifest) -> str:
    obs, act = manifest.observation, manifest.action
    if obs.get("kind", "state") != "state" or act.get("kind") == "discrete":
        raise ContractError("a ROS 2 contract maps state observations and continuous actions; this policy has "
                            f"{obs.get('kind')} observations and {act.get('kind')} actions")
    d_obs, d_act = int(np.prod(obs["shape"])), int(np.prod(act["shape"]))
    if (d_obs, d_act) == (META_WORLD_OBS, META_WORLD_ACT):
        return META_WORLD.read_text()
    # joint space: every observation value is a joint position, the action a joint command (edit the names)
    lines = [f"# Starter ROS 2 contract for a policy with {d_obs} observation and {d_act} action values. Edit the",
             "# joint names and the observation layout to match the robot (see runtime/ros2/contract.py).",
             f"format: {FORMAT}", f"format_version: {FORMAT_VERSION}", "node: lram_policy", "domain_id: 0",
             "control_hz: 50", "stale_after_ms: 100", "miss_policy: hold", 'robots: [""]', "inputs:",
             "  joints: {topic: joint_states, type: sensor_msgs/msg/JointState}", "observation:",
             f"  - {{input: joints, field: position, joints: {json.dumps([f'joint_{i + 1}' for i in range(d_obs)])}}}",
             "action:", "  topic: joint_commands   # a ros2_control forward_command_controller's commands topic",
             "  type: std_msgs/msg/Float64MultiArray", "  scale: 1.0", "  offset: 0.0"]
    for k in ("low", "high"):
        if act.get(k) is not None:
            lines.append(f"  {k}: {json.dumps([float(v) for v in np.ravel(act[k])])}")
    return "\n".join(lines) + "\n"


def write_starter_contract(model_path, out_path) -> Path:
    """Write the starter contract for ``model_path`` and prove it loads and fits the policy."""
    out = Path(out_path)
    if out.exists():
        raise ContractError(f"{out} exists; not overwriting a contract someone may have edited")
    backend = make_backend(model_path, "auto", 1)
    try:
        manifest = read_manifest(model_path, getattr(backend, "metadata", None))
    finally:
        backend.close()
    text = starter_text(manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    load_contract(out).check_against(manifest)
    return out
