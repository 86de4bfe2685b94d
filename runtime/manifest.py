"""The contract between an exported step graph and everything that runs it.

The exporter writes it (into the ONNX ``metadata_props`` under ``lram.manifest`` and beside the graph as
``NAME.manifest.json``); the runtime, the calibrator and the TensorRT compiler read it. It lives in the
runtime because the runtime ships alone to a robot and must be able to read it without torch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = "lram-step-onnx"
FORMAT_VERSION = 2  # 2: each state tensor declares its block, cell and role
METADATA_KEY = "lram.manifest"
BATCH = "batch"  # the symbolic name of the dynamic batch dimension


class ManifestError(ValueError):
    """The manifest is missing, of another format or version, or disagrees with its graph."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: list  # ints, or "batch" for the dynamic batch dimension
    dtype: str  # numpy dtype name: float32, float16, uint8, bool, int64


# What a state tensor is to the cell that owns it. Consumers act on roles, never on tensor names:
# - memory: the accumulated content (mLSTM C, sLSTM c), carried in the scale exp(stabiliser)
# - normaliser: the accumulated gate mass that divides the readout (n), same scale as its memory
# - stabiliser: the running log scale (m); a free offset: (C e^d, n e^d, m - d) is the same memory
# - hidden: the previous output fed back through the recurrent weights (sLSTM h)
# - conv_window: the last K inputs of the causal conv, a shift register rather than a recurrence
STATE_ROLES = ("memory", "normaliser", "stabiliser", "hidden", "conv_window")


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state tensor; ``shape`` excludes the leading batch dimension (always axis 0).

    Declared by the block's step math (export/cells.py) and read from here by everything else."""

    name: str  # "<block>.<part>", e.g. "0.C" or "1.h": a unique key, never parsed
    shape: list
    dtype: str = "float32"
    block: int = 0  # index of the block that owns it
    cell: str = ""  # the block's cell kind, e.g. "mlstm", "slstm"
    role: str = "memory"  # one of STATE_ROLES
    stabiliser: str | None = None  # name of the state whose value is this one's log scale (memory, normaliser)

    def __post_init__(self):
        if self.role not in STATE_ROLES:
            raise ManifestError(f"state '{self.name}': unknown role {self.role!r} (one of {', '.join(STATE_ROLES)})")
        if self.dtype == "bfloat16":
            # numpy has no bfloat16: ml_dtypes (which onnx requires) registers it, so that np.dtype("bfloat16"),
            # the slots and every comparison by name work (lram calibrate --precision bf16-state)
            try:
                import ml_dtypes  # noqa: F401
            except ImportError:
                raise ManifestError(f"state '{self.name}' is bfloat16, which needs the ml_dtypes package "
                                    "(pip install ml_dtypes; it comes with onnx)") from None

    @property
    def recurrent(self) -> bool:
        """On the cell's own recurrence (state -> math -> state), where precision must stay high."""
        return self.role != "conv_window"

    @property
    def input(self) -> str:
        return f"state_in.{self.name}"

    @property
    def output(self) -> str:
        return f"state_out.{self.name}"

    @property
    def bytes_per_robot(self) -> int:
        import numpy as np

        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Manifest:
    inputs: list  # TensorSpec
    outputs: list  # TensorSpec
    state: list  # StateSpec
    observation: dict  # {"kind": "state", "shape": [D], "dtype": "float32", "pad_to": 204, "low": [..]|None, "high": [..]|None}
    #                    or {"kind": "image", "shape": [64, 64, C], "dtype": "uint8", "scale": 1/255}
    action: dict  # {"kind": "continuous", "shape": [d], "low": [..], "high": [..], "decode": "reference"|"bin_center", "bins": 256}
    #               or {"kind": "discrete", "n": N, "decode": ...}; decode: how the graph turned logits into the
    #               action (lram.model.action_head); the runtime takes the graph's action as it comes
    reward_scale: float
    opset: int
    model: dict = field(default_factory=dict)  # config, config_hash, parameters
    producer: dict = field(default_factory=dict)
    # standard (only ONNX ops), ort (+ com.microsoft contrib ops), native (+ lram.native layers), plugin (lram cells)
    flavour: str = "standard"
    precision: str = "fp32"
    target_return: float | None = None  # default return-to-go target, raw reward units
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def state_bytes_per_robot(self) -> int:
        return sum(s.bytes_per_robot for s in self.state)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["state_bytes_per_robot"] = self.state_bytes_per_robot
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ManifestError(f"not an lram step-graph manifest (format={d.get('format') if isinstance(d, dict) else None!r}, expected {FORMAT!r})")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            hint = " (written by an older lram export: re-export the graph)" if isinstance(version, int) and version < FORMAT_VERSION else ""
            raise ManifestError(f"manifest format_version {version!r} is not supported (this runtime reads version "
                                f"{FORMAT_VERSION}){hint}")
        for s in d.get("state") or []:
            missing = [k for k in ("name", "shape", "block", "cell", "role") if not isinstance(s, dict) or k not in s]
            if missing:
                raise ManifestError(f"manifest state entry {s.get('name') if isinstance(s, dict) else s!r} lacks {missing}")
        try:
            return cls(
                inputs=[TensorSpec(**t) for t in d["inputs"]],
                outputs=[TensorSpec(**t) for t in d["outputs"]],
                state=[StateSpec(**s) for s in d["state"]],
                observation=d["observation"],
                action=d["action"],
                reward_scale=float(d["reward_scale"]),
                opset=int(d["opset"]),
                model=d.get("model", {}),
                producer=d.get("producer", {}),
                flavour=d.get("flavour", "standard"),
                precision=d.get("precision", "fp32"),
                target_return=d.get("target_return"),
            )
        except (KeyError, TypeError) as e:
            raise ManifestError(f"manifest is incomplete or malformed: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ManifestError(f"manifest is not valid JSON: {e}") from None


def sidecar_path(onnx_path: str | Path) -> Path:
    """``policy.onnx`` -> ``policy.manifest.json``."""
    p = Path(onnx_path)
    return p.with_name(p.stem + ".manifest.json")
