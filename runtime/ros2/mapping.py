"""ROS messages -> one robot's observation row, and the policy's action -> the command message."""
from __future__ import annotations

import numpy as np

from .contract import Contract, extract
from .messages import Duration, Float64MultiArray, Header, JointTrajectory, JointTrajectoryPoint, MultiArrayDimension, \
    MultiArrayLayout, Time


class ObservationBuilder:
    """Fills the observation of one robot from the latest message of each input, in contract order."""

    def __init__(self, contract: Contract):
        self.entries = contract.observation
        self.size = contract.obs_size
        self.previous: np.ndarray | None = None  # last tick's row, for ``previous`` entries

    def reset(self) -> None:
        self.previous = None

    def build(self, latest: dict) -> np.ndarray:
        """``latest``: input name -> newest message. Float64 row (NaN where a value is missing)."""
        row = np.empty(self.size, dtype=np.float64)
        at, spans = 0, []
        for e in self.entries:
            if e.kind == "value":
                row[at:at + e.width] = e.value
            elif e.kind == "field":
                row[at:at + e.width] = (extract(e, latest[e.input]) - e.offset) * e.scale
            else:
                spans.append((at, e))
            at += e.width
        # like a frame-stacking env on its first step, "previous" repeats the current values before any history
        before = row if self.previous is None else self.previous
        for at, e in spans:
            row[at:at + e.width] = before[e.span[0]:e.span[1]]
        self.previous = row
        return row


class ActionEncoder:
    """The policy's action row -> the contract's command message (scale, offset, limits in float64)."""

    def __init__(self, contract: Contract):
        a = contract.action
        self.spec = a
        self.period = contract.period

    def command(self, action: np.ndarray) -> np.ndarray:
        a = self.spec
        cmd = a.offset + a.scale * np.asarray(action, dtype=np.float64).ravel()
        if a.low is not None:
            cmd = np.maximum(cmd, a.low)
        if a.high is not None:
            cmd = np.minimum(cmd, a.high)
        return cmd

    def message(self, action: np.ndarray, stamp_ns: int):
        cmd = self.command(action).tolist()
        if self.spec.type == "std_msgs/msg/Float64MultiArray":
            return Float64MultiArray(layout=MultiArrayLayout(dim=[MultiArrayDimension("action", len(cmd), len(cmd))]), data=cmd)
        # one point reached one control period from now: what a joint_trajectory_controller interpolates to
        step_ns = int(round(self.period * 1e9))
        return JointTrajectory(header=Header(stamp=ros_time(stamp_ns)), joint_names=list(self.spec.joints),
                               points=[JointTrajectoryPoint(positions=cmd, time_from_start=Duration(step_ns // 10**9, step_ns % 10**9))])


def ros_time(ns: int) -> Time:
    return Time(sec=int(ns // 10**9), nanosec=int(ns % 10**9))
