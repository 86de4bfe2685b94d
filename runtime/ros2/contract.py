"""The ROS 2 contract of an exported policy: which topics feed which observation slots, where the action goes.

It is a data file that travels beside the graph (``policy.ros2.yaml``, YAML or JSON), not code, so an
integrator wires a robot by editing text. Checked at load against the policy's manifest (observation and
action sizes); every problem is one line naming the key at fault.

Observation entries are filled in order; each yields a fixed number of values::

    {input: joints, field: position, joints: [j1, j2]}   # JointState matched by joint *name*
    {input: imu, field: angular_velocity}                 # Vector3 -> x, y, z; Quaternion -> x, y, z, w
    {input: cmd, field: linear.x}                         # one number
    {input: arr, field: data, index: [0, 3]}              # picks from a sequence
    {input: lin_acc}                                      # no field: the whole message (a Vector3 topic)
    {value: [0.0, 0.0]}                                   # constants (padding a robot does not have)
    {previous: [0, 18]}                                   # slots 0..17 as they were one tick earlier

Each input entry may carry ``offset`` and ``scale`` (scalar or one per value): slot = (value - offset) * scale.
The action leaves as command = offset + scale * action, clipped to ``low``/``high`` when given.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "lram-ros2-contract"
FORMAT_VERSION = 1
ACTION_TYPES = ("std_msgs/msg/Float64MultiArray", "trajectory_msgs/msg/JointTrajectory")
RELIABILITY = ("reliable", "best_effort")
DURABILITY = ("volatile", "transient_local")


class ContractError(ValueError):
    """The contract file is malformed or does not fit the policy."""


@dataclass(frozen=True)
class QosSpec:
    reliability: str = "reliable"  # ROS 2's default profile: reliable, volatile, keep-last 10
    durability: str = "volatile"
    depth: int = 10


@dataclass(frozen=True)
class InputSpec:
    name: str
    topic: str
    type: str
    qos: QosSpec
    stale_after_ms: float | None = None  # None: the contract's; inf: never stale once received (a goal, a map)


@dataclass(frozen=True)
class ObsEntry:
    kind: str  # "field" | "value" | "previous"
    width: int
    input: str | None = None
    path: tuple = ()  # attribute path inside the message
    joints: tuple | None = None  # JointState: names to look up
    index: tuple | None = None  # sequence field: positions to pick
    value: tuple | None = None  # constants
    span: tuple | None = None  # previous: (start, stop) obs slots
    offset: np.ndarray | float = 0.0
    scale: np.ndarray | float = 1.0


@dataclass(frozen=True)
class ActionSpec:
    topic: str
    type: str
    joints: tuple | None
    scale: np.ndarray
    offset: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None
    qos: QosSpec


@dataclass(frozen=True)
class Contract:
    node: str
    domain_id: int
    control_hz: float
    stale_after_ms: float
    miss_policy: str
    robots: tuple  # namespaces, one slot each, in slot order
    inputs: dict  # name -> InputSpec
    observation: tuple  # ObsEntry
    action: ActionSpec
    reward: ObsEntry | None
    control_qos: QosSpec
    status_period_ms: float
    target_return: float | None = None  # return-to-go to ask for; None: the manifest's
    source: dict = field(default_factory=dict)  # the file's content, for reports

    @property
    def obs_size(self) -> int:
        return sum(e.width for e in self.observation)

    @property
    def period(self) -> float:
        return 1.0 / self.control_hz

    def topic(self, robot: int, name: str) -> str:
        """The DDS topic of a ROS topic name for one robot: relative names live in the robot's namespace."""
        return dds_topic(self.robots[robot], name)

    def control_topic(self, robot: int, leaf: str) -> str:
        return dds_topic(self.robots[robot], f"{self.node}/{leaf}")

    def check_against(self, manifest) -> None:
        """One-line error unless this contract fits the policy's observation and action."""
        obs = manifest.observation
        if obs.get("kind", "state") != "state":
            raise ContractError(f"the policy takes {obs.get('kind')} observations; a ROS 2 contract fills state vectors only")
        want = int(np.prod(obs["shape"]))
        if self.obs_size != want:
            raise ContractError(f"contract observation fills {self.obs_size} values but the policy takes {want}")
        act = manifest.action
        if act.get("kind") == "discrete":
            raise ContractError("the policy has discrete actions; a ROS 2 contract maps continuous actions only")
        d = int(np.prod(act["shape"]))
        for name, arr in (("scale", self.action.scale), ("offset", self.action.offset), ("low", self.action.low),
                          ("high", self.action.high)):
            if arr is not None and arr.size not in (1, d):
                raise ContractError(f"action.{name} has {arr.size} values but the policy's action has {d}")
        if self.action.joints is not None and len(self.action.joints) != d:
            raise ContractError(f"action.joints names {len(self.action.joints)} joints but the policy's action has {d}")


def dds_topic(namespace: str, name: str) -> str:
    """ROS 2 topic name -> DDS topic name (``rt/`` prefix, namespace for relative names)."""
    if not name.startswith("/"):
        ns = namespace.strip("/")
        name = f"/{ns}/{name}" if ns else f"/{name}"
    return "rt" + name


# -- loading ----------------------------------------------------------------------------------------------
def contract_beside(model_path: str | Path) -> Path | None:
    """``policy.onnx`` -> ``policy.ros2.yaml`` (or ``.ros2.json``) beside it, if there is one."""
    p = Path(model_path)
    for suffix in (".ros2.yaml", ".ros2.yml", ".ros2.json"):
        c = p.with_name(p.stem + suffix)
        if c.is_file():
            return c
    return None


def load_contract(path: str | Path) -> Contract:
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: no such contract file")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ContractError(f"{path}: not valid JSON: {e}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ContractError(f"{path}: reading YAML needs pyyaml (pip install 'lram-deploy[ros2]'), or write the contract as .json") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ContractError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    try:
        return parse_contract(data)
    except ContractError as e:
        raise ContractError(f"{path}: {e}") from None


def parse_contract(data: dict) -> Contract:
    from .messages import TYPES

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ContractError(f"not an lram ROS 2 contract (format must be {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ContractError(f"format_version {data.get('format_version')!r} is not supported (this runtime reads {FORMAT_VERSION})")
    qos_profiles = {"default": QosSpec(), "sensor": QosSpec("best_effort", "volatile", 10)}
    for name, q in (data.get("qos") or {}).items():
        qos_profiles[name] = _qos(q, f"qos.{name}")

    def qos_of(ref, where):
        if ref is None:
            return qos_profiles["default"]
        if isinstance(ref, dict):
            return _qos(ref, where)
        if ref not in qos_profiles:
            raise ContractError(f"{where}: unknown QoS profile {ref!r} (have {', '.join(qos_profiles)})")
        return qos_profiles[ref]

    inputs = {}
    for name, spec in _req(data, "inputs", dict).items():
        where = f"inputs.{name}"
        if not isinstance(spec, dict):
            raise ContractError(f"{where} must be a mapping with topic and type")
        t = _req(spec, "type", str, where)
        if t not in TYPES:
            raise ContractError(f"{where}.type {t!r} is not supported (one of {', '.join(sorted(TYPES))})")
        stale = spec.get("stale_after_ms")
        if stale == "never":
            stale = float("inf")
        elif stale is not None and (not isinstance(stale, (int, float)) or stale <= 0):
            raise ContractError(f"{where}.stale_after_ms must be a positive number of ms or 'never'")
        inputs[name] = InputSpec(name, _req(spec, "topic", str, where), t, qos_of(spec.get("qos", "sensor"), f"{where}.qos"),
                                 None if stale is None else float(stale))

    observation = []
    for i, e in enumerate(_req(data, "observation", list)):
        observation.append(_obs_entry(e, f"observation[{i}]", inputs, sum(o.width for o in observation)))
    reward = _obs_entry(data["reward"], "reward", inputs, 0) if data.get("reward") is not None else None
    if reward is not None and (reward.kind != "field" or reward.width != 1):
        raise ContractError("reward must name one number of an input (e.g. {input: reward, field: data})")

    a = _req(data, "action", dict)
    a_type = _req(a, "type", str, "action")
    if a_type not in ACTION_TYPES:
        raise ContractError(f"action.type {a_type!r} is not supported (one of {', '.join(ACTION_TYPES)})")
    joints = a.get("joints")
    if a_type.startswith("trajectory_msgs") and not joints:
        raise ContractError("action.joints is required for a JointTrajectory (its joint_names)")
    low, high = _floats(a.get("low"), "action.low"), _floats(a.get("high"), "action.high")
    action = ActionSpec(topic=_req(a, "topic", str, "action"), type=a_type,
                        joints=tuple(str(j) for j in joints) if joints else None,
                        scale=_floats(a.get("scale", 1.0), "action.scale"), offset=_floats(a.get("offset", 0.0), "action.offset"),
                        low=low, high=high, qos=qos_of(a.get("qos"), "action.qos"))

    robots = data.get("robots", [""])
    if not isinstance(robots, list) or not robots:
        raise ContractError("robots must be a non-empty list of namespaces (\"\" for none)")
    robots = tuple(str(r.get("namespace", "") if isinstance(r, dict) else r or "") for r in robots)
    if len(set(robots)) != len(robots):
        raise ContractError("robots: two robots share a namespace; each needs its own topics")
    hz = float(data.get("control_hz", 0) or 0)
    if hz <= 0:
        raise ContractError("control_hz must be a positive number")
    domain = data.get("domain_id", 0)
    if not isinstance(domain, int) or not 0 <= domain <= 232:
        raise ContractError(f"domain_id must be an integer in 0..232, not {domain!r}")
    from ..safe_action import MISS_POLICIES

    miss = data.get("miss_policy", "hold")
    if miss not in MISS_POLICIES:
        raise ContractError(f"miss_policy {miss!r} is not one of {', '.join(MISS_POLICIES)}")
    return Contract(node=str(data.get("node", "lram_policy")), domain_id=domain, control_hz=hz,
                    stale_after_ms=float(data.get("stale_after_ms", 3000.0 / hz)), miss_policy=miss, robots=robots,
                    inputs=inputs, observation=tuple(observation), action=action, reward=reward,
                    control_qos=qos_of(data.get("control_qos"), "control_qos"),
                    status_period_ms=float(data.get("status_period_ms", 200.0)),
                    target_return=None if data.get("target_return") is None else float(data["target_return"]), source=data)


def _obs_entry(e, where, inputs, start) -> ObsEntry:
    from .messages import TYPES

    if not isinstance(e, dict):
        raise ContractError(f"{where} must be a mapping")
    if "value" in e:
        v = _floats(e["value"], f"{where}.value")
        return ObsEntry("value", int(v.size), value=tuple(v.tolist()))
    if "previous" in e:
        span = e["previous"]
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(s, int) for s in span)
                and 0 <= span[0] < span[1] <= start):
            raise ContractError(f"{where}.previous must be [start, stop] of slots filled before it (0..{start})")
        return ObsEntry("previous", span[1] - span[0], span=tuple(span))
    name = _req(e, "input", str, where)
    if name not in inputs:
        raise ContractError(f"{where}.input {name!r} is not one of the inputs ({', '.join(inputs) or 'none'})")
    # no field: the whole message (a Vector3 or Point topic gives x, y, z)
    path = tuple(_req(e, "field", str, where).split(".")) if e.get("field") is not None else ()
    if e.get("joints") and not path:
        raise ContractError(f"{where}: a JointState entry needs field: position, velocity or effort")
    msg_type = TYPES[inputs[name].type]
    joints = tuple(str(j) for j in e["joints"]) if e.get("joints") else None
    index = tuple(int(i) for i in e["index"]) if e.get("index") is not None else None
    entry = ObsEntry("field", 0, input=name, path=path, joints=joints, index=index)
    try:
        probe = extract(entry, _probe_message(msg_type, path, joints, index))
    except (AttributeError, TypeError, ValueError):
        raise ContractError(f"{where}: {inputs[name].type} has no numeric field {'.'.join(path) or '(whole message)'!r}") from None
    width = int(probe.size)
    if width == 0:
        raise ContractError(f"{where}: field {'.'.join(path)!r} is a sequence: say which values with joints: or index:")
    offset, scale = _floats(e.get("offset", 0.0), f"{where}.offset"), _floats(e.get("scale", 1.0), f"{where}.scale")
    for k, arr in (("offset", offset), ("scale", scale)):
        if arr.size not in (1, width):
            raise ContractError(f"{where}.{k} has {arr.size} values for a field of {width}")
    return ObsEntry("field", width, input=name, path=path, joints=joints, index=index,
                    offset=offset if offset.size > 1 else float(offset[0]), scale=scale if scale.size > 1 else float(scale[0]))


def _probe_message(msg_type, path, joints, index):
    """A default message whose sequences are long enough for ``joints``/``index``: its extraction tells the width."""
    msg = msg_type()
    if joints is not None:
        msg.name = list(joints)
        for f in ("position", "velocity", "effort"):
            setattr(msg, f, [0.0] * len(joints))
    elif index is not None:
        holder = msg
        for p in path[:-1]:
            holder = getattr(holder, p)
        if isinstance(getattr(holder, path[-1]), list):
            setattr(holder, path[-1], [0.0] * (max(index) + 1 if index else 0))
    return msg


# -- reading values out of messages --------------------------------------------------------------------------
def extract(entry: ObsEntry, msg) -> np.ndarray:
    """The float64 values ``entry`` takes from ``msg``; NaN where a named joint is absent (the policy refuses the row)."""
    if entry.joints is not None:
        values = getattr(msg, entry.path[0])
        where = {n: i for i, n in enumerate(msg.name)}
        out = np.full(len(entry.joints), np.nan)
        for k, j in enumerate(entry.joints):
            i = where.get(j)
            if i is not None and i < len(values):
                out[k] = values[i]
        return out
    v = msg
    for p in entry.path:
        v = getattr(v, p)
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        out = np.array([float(v)])
    elif isinstance(v, (list, tuple)):
        out = np.asarray(v, dtype=np.float64)
    elif hasattr(v, "x") and hasattr(v, "y") and hasattr(v, "z"):
        out = np.array([v.x, v.y, v.z] + ([v.w] if hasattr(v, "w") else []), dtype=np.float64)
    else:
        raise TypeError(f"not numeric: {type(v).__name__}")
    if entry.index is not None:
        idx = np.asarray(entry.index, dtype=np.int64)
        picked = np.full(idx.size, np.nan)
        have = (idx >= 0) & (idx < out.size)
        picked[have] = out[idx[have]]
        return picked
    return out


# -- small parsers ------------------------------------------------------------------------------------------
def _req(d, key, typ, where=None):
    if key not in d:
        raise ContractError(f"{where + '.' if where else ''}{key} is missing")
    v = d[key]
    if not isinstance(v, typ):
        raise ContractError(f"{where + '.' if where else ''}{key} must be a {typ.__name__}, not {type(v).__name__}")
    return v


def _floats(v, where) -> np.ndarray | None:
    if v is None:
        return None
    try:
        arr = np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel()
    except (TypeError, ValueError):
        raise ContractError(f"{where} must be a number or a list of numbers") from None
    if not np.isfinite(arr).all():
        raise ContractError(f"{where} must be finite")
    return arr


def _qos(q, where) -> QosSpec:
    if not isinstance(q, dict):
        raise ContractError(f"{where} must be a mapping (reliability, durability, depth)")
    s = QosSpec(str(q.get("reliability", "reliable")), str(q.get("durability", "volatile")), int(q.get("depth", 10)))
    if s.reliability not in RELIABILITY:
        raise ContractError(f"{where}.reliability must be one of {', '.join(RELIABILITY)}")
    if s.durability not in DURABILITY:
        raise ContractError(f"{where}.durability must be one of {', '.join(DURABILITY)}")
    if s.depth < 1:
        raise ContractError(f"{where}.depth must be at least 1")
    return s
