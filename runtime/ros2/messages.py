"""The ROS 2 messages the policy node speaks, as Cyclone DDS IDL types that follow ROS 2's DDS mapping.

rmw_cyclonedds (and every other DDS rmw) maps ``pkg/msg/Type`` to the IDL struct ``pkg::msg::dds_::Type_``
with ``@final`` extensibility and plain CDR; field order and types are those of the ``.msg`` file. A ROS 2 node
on the same domain therefore matches these types. The tests check each one byte for byte against the CDR
that ``rosbags`` (ROS 2's message definitions, independent of this file) produces.
"""
# no "from __future__ import annotations": cyclonedds resolves these annotations at run time

from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.annotations import final
from cyclonedds.idl.types import array, byte, float64, int32, sequence, uint8, uint32


def _seq():
    return field(default_factory=list)


# -- builtin_interfaces / std_msgs ---------------------------------------------------------------------------
@final
@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@final
@dataclass
class Duration(IdlStruct, typename="builtin_interfaces::msg::dds_::Duration_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@final
@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@final
@dataclass
class Bool(IdlStruct, typename="std_msgs::msg::dds_::Bool_"):
    data: bool = False


@final
@dataclass
class Empty(IdlStruct, typename="std_msgs::msg::dds_::Empty_"):
    # ROS 2's IDL generator gives an empty message this one dummy member (IDL structs cannot be empty)
    structure_needs_at_least_one_member: uint8 = 0


@final
@dataclass
class Float64(IdlStruct, typename="std_msgs::msg::dds_::Float64_"):
    data: float64 = 0.0


@final
@dataclass
class MultiArrayDimension(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str = ""
    size: uint32 = 0
    stride: uint32 = 0


@final
@dataclass
class MultiArrayLayout(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: sequence[MultiArrayDimension] = _seq()
    data_offset: uint32 = 0


@final
@dataclass
class Float64MultiArray(IdlStruct, typename="std_msgs::msg::dds_::Float64MultiArray_"):
    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: sequence[float64] = _seq()


# -- geometry_msgs ------------------------------------------------------------------------------------------
@final
@dataclass
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@final
@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@final
@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0


@final
@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@final
@dataclass
class PoseStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseStamped_"):
    header: Header = field(default_factory=Header)
    pose: Pose = field(default_factory=Pose)


@final
@dataclass
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


# -- sensor_msgs --------------------------------------------------------------------------------------------
@final
@dataclass
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    header: Header = field(default_factory=Header)
    name: sequence[str] = _seq()
    position: sequence[float64] = _seq()
    velocity: sequence[float64] = _seq()
    effort: sequence[float64] = _seq()


def _cov():
    return field(default_factory=lambda: [0.0] * 9)


@final
@dataclass
class Imu(IdlStruct, typename="sensor_msgs::msg::dds_::Imu_"):
    header: Header = field(default_factory=Header)
    orientation: Quaternion = field(default_factory=Quaternion)
    orientation_covariance: array[float64, 9] = _cov()
    angular_velocity: Vector3 = field(default_factory=Vector3)
    angular_velocity_covariance: array[float64, 9] = _cov()
    linear_acceleration: Vector3 = field(default_factory=Vector3)
    linear_acceleration_covariance: array[float64, 9] = _cov()


# -- trajectory_msgs ----------------------------------------------------------------------------------------
@final
@dataclass
class JointTrajectoryPoint(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectoryPoint_"):
    positions: sequence[float64] = _seq()
    velocities: sequence[float64] = _seq()
    accelerations: sequence[float64] = _seq()
    effort: sequence[float64] = _seq()
    time_from_start: Duration = field(default_factory=Duration)


@final
@dataclass
class JointTrajectory(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectory_"):
    header: Header = field(default_factory=Header)
    joint_names: sequence[str] = _seq()
    points: sequence[JointTrajectoryPoint] = _seq()


# -- diagnostic_msgs ----------------------------------------------------------------------------------------
@final
@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str = ""
    value: str = ""


@final
@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: byte = 0  # OK=0 WARN=1 ERROR=2 STALE=3
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: sequence[KeyValue] = _seq()


# ROS name ("pkg/msg/Type") -> IDL class, for every message the contract may name
TYPES = {f"{c.__idl_typename__.split('::')[0]}/msg/{c.__name__}": c for c in (
    Time, Duration, Header, Bool, Empty, Float64, MultiArrayDimension, MultiArrayLayout, Float64MultiArray,
    Vector3, Point, Quaternion, Pose, PoseStamped, Twist, JointState, Imu, JointTrajectoryPoint, JointTrajectory,
    KeyValue, DiagnosticStatus)}
