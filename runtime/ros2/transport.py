"""The DDS side of the policy node: one plain DDS participant that follows ROS 2's conventions.

A ROS 2 topic ``/a/b`` is the DDS topic ``rt/a/b``; its type is ``pkg::msg::dds_::Type_`` (see messages.py);
QoS is ROS 2's (reliable/best-effort, volatile, keep-last depth). Readers and writers also carry the
``typehash=RIHS01_...;`` USER_DATA that ROS 2 Iron and later announce (a missing hash only warns there).
"""
from __future__ import annotations

from functools import lru_cache

from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from .contract import Contract, QosSpec
from .messages import TYPES, Bool, DiagnosticStatus, Empty


def ros_name(msg_type) -> str:
    pkg, _, _, name = msg_type.__idl_typename__.split("::")
    return f"{pkg}/msg/{name.rstrip('_')}"


@lru_cache(maxsize=None)
def type_hash(ros_type: str) -> str | None:
    """ROS 2's RIHS01 type hash (Jazzy definitions), from rosbags; None when rosbags is not installed."""
    try:
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        return None
    return get_typestore(Stores.ROS2_JAZZY).hash_rihs01(ros_type)


def dds_qos(spec: QosSpec, msg_type=None) -> Qos:
    policies = [Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)) if spec.reliability == "reliable"
                else Policy.Reliability.BestEffort,
                Policy.Durability.TransientLocal if spec.durability == "transient_local" else Policy.Durability.Volatile,
                Policy.History.KeepLast(spec.depth)]
    h = type_hash(ros_name(msg_type)) if msg_type is not None else None
    if h:
        policies.append(Policy.Userdata(data=f"typehash={h};".encode()))
    return Qos(*policies)


class Endpoints:
    """Topics are created once per participant and name; readers/writers reuse them."""

    def __init__(self, domain_id: int):
        self.participant = DomainParticipant(domain_id)
        self._topics = {}

    def topic(self, name: str, msg_type):
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = Topic(self.participant, name, msg_type)
        return t

    def reader(self, name: str, msg_type, qos: QosSpec) -> DataReader:
        return DataReader(self.participant, self.topic(name, msg_type), qos=dds_qos(qos, msg_type))

    def writer(self, name: str, msg_type, qos: QosSpec) -> DataWriter:
        return DataWriter(self.participant, self.topic(name, msg_type), qos=dds_qos(qos, msg_type))


def take_all(reader: DataReader, depth: int) -> list:
    return [s for s in reader.take(N=depth) if getattr(getattr(s, "sample_info", None), "valid_data", True)]


class DdsTransport:
    def __init__(self, contract: Contract, endpoints: Endpoints | None = None):
        c = contract
        self.ep = endpoints or Endpoints(c.domain_id)
        n = len(c.robots)
        self.inputs = [{name: (self.ep.reader(c.topic(r, s.topic), TYPES[s.type], s.qos), s.qos.depth)
                        for name, s in c.inputs.items()} for r in range(n)]
        self.enable = [self.ep.reader(c.control_topic(r, "enable"), Bool, c.control_qos) for r in range(n)]
        self.reset = [self.ep.reader(c.control_topic(r, "reset"), Empty, c.control_qos) for r in range(n)]
        self.action = [self.ep.writer(c.topic(r, c.action.topic), TYPES[c.action.type], c.action.qos) for r in range(n)]
        self.status = [self.ep.writer(c.control_topic(r, "status"), DiagnosticStatus, c.control_qos) for r in range(n)]
        self.depth = c.control_qos.depth

    def take_inputs(self, r: int) -> dict:
        """input name -> the newest message since the last call (inputs without news are absent)."""
        out = {}
        for name, (reader, depth) in self.inputs[r].items():
            got = take_all(reader, depth)
            if got:
                out[name] = got[-1]
        return out

    def take_enable(self, r: int) -> list:
        return [bool(m.data) for m in take_all(self.enable[r], self.depth)]

    def take_reset(self, r: int) -> int:
        return len(take_all(self.reset[r], self.depth))

    def publish_action(self, r: int, msg) -> None:
        self.action[r].write(msg)

    def publish_status(self, r: int, msg) -> None:
        self.status[r].write(msg)

    def close(self, flush_s: float = 0.5) -> None:
        """Give the last status a moment to be acknowledged before the participant goes away."""
        for w in self.status:
            try:
                w.wait_for_acks(duration(seconds=flush_s))
            except Exception:  # nobody acknowledged in time; cyclonedds 11.0.1 reports that as an AttributeError
                pass
