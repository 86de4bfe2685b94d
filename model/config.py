"""Architecture (LRAMConfig), task (TaskSpec) and the named size presets.

The architecture is what the paper sizes; the task is what one deployment needs (observation kind and size,
action space, reward scale). A checkpoint carries both.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

MAX_STATE_DIM = 204  # low-dimensional states are zero-padded to this
N_DISCRETE = 18  # discrete action tokens 0..17
N_BINS = 256  # continuous bins, tokens 18..273
VOCAB = N_DISCRETE + N_BINS  # 274
MAX_ACTION_DIMS = 8  # action_net = Linear(H, 274 * 8)
IMAGE_SIZE = 64
# How continuous logits become an action. "reference": the reference training code's rule (argmax over all 274
# classes of each dim, token = max(argmax - 18, 0), value at the bin's left edge; a discrete winner gives the low
# bound). "bin_center": argmax over the 256 bin classes, value at the bin's centre (this project's trainer and
# evaluator). Discrete tasks decode the same way under both.
ACTION_DECODES = ("reference", "bin_center")
REWARD_SCALES = {"metaworld": 200.0, "dmcontrol": 100.0, "atari": 20.0, "procgen": 1.0, "composuite": 1.0, "mimicgen": 1.0}


class ConfigError(ValueError):
    """An unknown preset or an inconsistent configuration."""


@dataclass(frozen=True)
class LRAMConfig:
    num_blocks: int
    embedding_dim: int
    slstm_at: tuple = ()
    num_heads: int = 4
    conv1d_kernel_size: int = 4
    qkv_proj_blocksize: int = 4
    mlstm_proj_factor: float = 2.0
    ffn_proj_factor: float = 1.3
    encoders: tuple = ("state", "image")  # which observation encoders exist
    context_timesteps: int = 50  # training context C (3 tokens per timestep)

    def __post_init__(self):
        object.__setattr__(self, "slstm_at", tuple(int(i) for i in self.slstm_at))
        object.__setattr__(self, "encoders", tuple(self.encoders))
        if self.num_blocks < 1 or self.embedding_dim < 1:
            raise ConfigError("num_blocks and embedding_dim must be positive")
        bad = [i for i in self.slstm_at if not 0 <= i < self.num_blocks]
        if bad:
            raise ConfigError(f"slstm_at {bad} outside 0..{self.num_blocks - 1}")
        if (2 * self.embedding_dim) % (self.num_heads * self.qkv_proj_blocksize):
            raise ConfigError("2 * embedding_dim must be divisible by num_heads * qkv_proj_blocksize")
        unknown = set(self.encoders) - {"state", "image"}
        if unknown or not self.encoders:
            raise ConfigError(f"encoders must be a non-empty subset of ('state', 'image'), got {self.encoders}")

    @property
    def block_types(self) -> list[str]:
        return ["slstm" if i in self.slstm_at else "mlstm" for i in range(self.num_blocks)]

    @property
    def flavour(self) -> str:
        return "[7:1]" if self.slstm_at else "[1:0]"  # the paper's names for "with sLSTM blocks" / "mLSTM only"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slstm_at"] = list(self.slstm_at)
        d["encoders"] = list(self.encoders)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LRAMConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class TaskSpec:
    """What one environment needs from the model."""

    obs_kind: str  # "state" or "image"
    obs_shape: tuple  # (D,) for states, (64, 64, C) for images
    action_kind: str  # "continuous" or "discrete"
    action_dim: int = 0  # continuous
    action_low: tuple = ()
    action_high: tuple = ()
    action_n: int = 0  # discrete
    reward_scale: float = 1.0
    target_return: float | None = None  # default return-to-go at episode start (raw units)
    action_decode: str = "bin_center"  # one of ACTION_DECODES (lram.model.action_head says what each does)
    obs_low: tuple | None = None  # expected observation range (for the runtime's range check)
    obs_high: tuple | None = None
    name: str = ""

    def __post_init__(self):
        for f in ("obs_shape", "action_low", "action_high"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        for f in ("obs_low", "obs_high"):
            if getattr(self, f) is not None:
                object.__setattr__(self, f, tuple(float(x) for x in getattr(self, f)))
        if self.obs_kind == "state":
            if len(self.obs_shape) != 1 or not 0 < self.obs_shape[0] <= MAX_STATE_DIM:
                raise ConfigError(f"state observations must be 1-D with at most {MAX_STATE_DIM} dims, got {self.obs_shape}")
        elif self.obs_kind == "image":
            if len(self.obs_shape) != 3 or self.obs_shape[:2] != (IMAGE_SIZE, IMAGE_SIZE) or self.obs_shape[2] not in (1, 3):
                raise ConfigError(f"image observations must be (64, 64, 1|3), got {self.obs_shape}")
        else:
            raise ConfigError(f"obs_kind must be 'state' or 'image', got {self.obs_kind!r}")
        if self.action_kind == "continuous":
            if not 0 < self.action_dim <= MAX_ACTION_DIMS:
                raise ConfigError(f"continuous action_dim must be 1..{MAX_ACTION_DIMS}, got {self.action_dim}")
            if len(self.action_low) != self.action_dim or len(self.action_high) != self.action_dim:
                raise ConfigError("action_low/action_high must have action_dim entries")
            if any(h <= lo for lo, h in zip(self.action_low, self.action_high)):
                raise ConfigError("every action_high must exceed action_low")
        elif self.action_kind == "discrete":
            if not 0 < self.action_n <= N_DISCRETE:
                raise ConfigError(f"discrete action_n must be 1..{N_DISCRETE}, got {self.action_n}")
        else:
            raise ConfigError(f"action_kind must be 'continuous' or 'discrete', got {self.action_kind!r}")
        if self.action_decode not in ACTION_DECODES:
            raise ConfigError(f"action_decode must be one of {', '.join(ACTION_DECODES)}, got {self.action_decode!r}")
        if self.reward_scale <= 0:
            raise ConfigError("reward_scale must be positive")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown task spec keys: {sorted(unknown)}")
        return cls(**d)


def config_hash(config: LRAMConfig, task: TaskSpec | None = None) -> str:
    payload = {"model": config.to_dict(), "task": task.to_dict() if task else None}
    return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# name -> (blocks, dim, sLSTM positions of the [7:1] flavour); spec table.
_SIZES = {
    "tiny": (2, 64, (1,)),
    "small": (4, 128, (1,)),
    "16M": (8, 512, (1,)),
    "48M": (12, 768, (1, 3)),
    "110M": (16, 1024, (1, 3)),
    "206M": (20, 1280, (1, 3, 5)),
}
PRESETS = sorted([*_SIZES, *(f"{n}-mlstm" for n in _SIZES)])


def preset(name: str, **overrides) -> LRAMConfig:
    """``16M`` is the [7:1] flavour (sLSTM at the spec's positions), ``16M-mlstm`` the [1:0] flavour."""
    base, _, flavour = name.partition("-")
    if base not in _SIZES or flavour not in ("", "mlstm"):
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    blocks, dim, slstm = _SIZES[base]
    cfg = LRAMConfig(num_blocks=blocks, embedding_dim=dim, slstm_at=() if flavour else slstm)
    return replace(cfg, **overrides) if overrides else cfg
