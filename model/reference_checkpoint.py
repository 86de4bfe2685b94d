"""Load a checkpoint of the reference training code into our ``LRAM``.

The reference code saves a Stable-Baselines3-style ``model.zip`` whose ``policy.pth`` is the state_dict of
``MultiDomainDiscreteDecisionXLSTMModel`` (keys prefixed ``_orig_mod.module.`` by DDP and torch.compile). The
model config is not inside the zip: it is the Hydra run directory's ``.hydra/config.yaml``. We therefore infer
the architecture from the weights themselves and, when the Hydra config is given, cross-check the two.

The reference trains with the sLSTM CUDA backend, whose cell stores ``_recurrent_kernel_`` and ``_bias_`` in a
different internal layout from the vanilla backend we run (and export); they are converted through the xlstm
package's own int2ext / ext2int.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import math
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from xlstm.blocks.slstm.cell import sLSTMCell_cuda

from .checkpoint import CheckpointError, load_weights
from .config import IMAGE_SIZE, MAX_STATE_DIM, N_BINS, N_DISCRETE, ConfigError, LRAMConfig, TaskSpec
from .lram import LRAM

log = logging.getLogger(__name__)

POLICY_FILE = "policy.pth"
STRIP_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DDP wrappers, in either order
# Parameters of the reference model that inference never reads (timestep embedding, action-token embedding,
# auxiliary prediction heads). They are dropped, and reported.
UNUSED_PREFIXES = ("embed_timestep.", "embed_action_disc.", "predict_state.", "predict_return.", "predict_reward.")
SLSTM_KERNEL = "xlstm.slstm_cell._recurrent_kernel_"
SLSTM_BIAS = "xlstm.slstm_cell._bias_"
_BLOCK_RE = re.compile(r"^encoder\.layers\.blocks\.(\d+)\.(.*)$")


@dataclass
class ReferenceLoadReport:
    """What loading a reference checkpoint did; attached to the returned model as ``reference_report``."""

    source: str
    stripped_prefixes: list = field(default_factory=list)
    dropped_keys: list = field(default_factory=list)  # unused at inference
    converted_slstm_blocks: list = field(default_factory=list)
    slstm_layout: str = "cuda"
    hydra_values: dict = field(default_factory=dict)  # architecture values read from config.yaml: name -> (value, key path)
    notes: list = field(default_factory=list)
    config: LRAMConfig | None = None


# ---- reading the zip --------------------------------------------------------------------------------------
def read_reference_state_dict(zip_path: str | Path) -> dict:
    """The raw state_dict in ``policy.pth`` of an SB3-style ``model.zip`` (prefixes not yet stripped)."""
    zip_path = Path(zip_path)
    if not zip_path.exists():
        raise CheckpointError(f"reference checkpoint {zip_path} does not exist")
    if zip_path.is_dir():
        raise CheckpointError(f"{zip_path} is a directory, not a reference model.zip "
                              "(an lram checkpoint directory is loaded with load_checkpoint)")
    if not zipfile.is_zipfile(zip_path):
        raise CheckpointError(f"{zip_path} is not a zip file: expected the reference training code's model.zip "
                              f"holding {POLICY_FILE}")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            candidates = [n for n in names if n == POLICY_FILE] or [n for n in names if n.rsplit("/", 1)[-1] == POLICY_FILE]
            if len(candidates) != 1:
                shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
                what = "no" if not candidates else f"{len(candidates)} ambiguous"
                raise CheckpointError(f"{zip_path} has {what} {POLICY_FILE}; it holds: {shown or '(nothing)'}. "
                                      "Not a reference-code model.zip")
            raw = zf.read(candidates[0])
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, NotImplementedError, ValueError) as e:
        raise CheckpointError(f"{zip_path} is a corrupted zip: {e}") from None
    try:
        sd = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip-in-zip, truncation or weights_only refusals all end here
        raise CheckpointError(f"{zip_path}:{POLICY_FILE} is corrupted or not a plain tensor state_dict "
                              f"(torch.load with weights_only=True: {_torch_load_reason(e)})") from None
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{zip_path}:{POLICY_FILE} does not hold a state_dict (got {type(sd).__name__})")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{zip_path}:{POLICY_FILE} holds non-tensor entries: {bad[:5]}")
    return dict(sd)


def _torch_load_reason(e: Exception) -> str:
    """The informative part of a torch.load error (its weights_only errors open with boilerplate)."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
        return f"refused: {' '.join(detail.split())}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def strip_prefixes(sd: Mapping) -> tuple[dict, list]:
    """Remove ``_orig_mod.`` and ``module.`` (either order, either alone) from the front of every key."""
    out, seen = {}, []
    for key, val in sd.items():
        k, stripped = key, ""
        while True:
            for p in STRIP_PREFIXES:
                if k.startswith(p):
                    k, stripped = k[len(p):], stripped + p
                    break
            else:
                break
        if stripped and stripped not in seen:
            seen.append(stripped)
        if k in out:
            raise CheckpointError(f"two keys map to {k!r} once the wrapper prefixes are stripped")
        out[k] = val
    return out, seen


def split_unused(sd: Mapping) -> tuple[dict, list]:
    kept = {k: v for k, v in sd.items() if not k.startswith(UNUSED_PREFIXES)}
    return kept, sorted(set(sd) - set(kept))


# ---- architecture from the weights ------------------------------------------------------------------------
def infer_config(sd: Mapping, context_timesteps: int = 50, source: str = "checkpoint") -> LRAMConfig:
    """The LRAMConfig the (stripped) weights describe."""
    blocks: dict[int, set] = {}
    for k in sd:
        m = _BLOCK_RE.match(k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(m.group(2))
    if not blocks or "encoder.layers.post_blocks_norm.weight" not in sd:
        sample = ", ".join(sorted(sd)[:6])
        raise CheckpointError(f"{source} does not look like an LRAM policy: no xLSTM backbone keys "
                              f"(encoder.layers.blocks.*, encoder.layers.post_blocks_norm.weight); keys start: {sample}")
    num_blocks = max(blocks) + 1
    gaps = sorted(set(range(num_blocks)) - set(blocks))
    if gaps:
        raise CheckpointError(f"{source}: backbone blocks {gaps} are missing (found blocks {sorted(blocks)})")
    H = int(sd["encoder.layers.post_blocks_norm.weight"].shape[0])
    slstm_at = tuple(i for i in range(num_blocks) if SLSTM_KERNEL in blocks[i])
    mlstm_at = [i for i in range(num_blocks) if i not in slstm_at]

    def shape(i, name):
        key = f"encoder.layers.blocks.{i}.{name}"
        if key not in sd:
            raise CheckpointError(f"{source}: missing key {key}")
        return tuple(sd[key].shape)

    kw: dict = {}
    heads = set()
    if mlstm_at:
        i = mlstm_at[0]
        heads.add(shape(i, "xlstm.mlstm_cell.igate.weight")[0])
        kw["conv1d_kernel_size"] = shape(i, "xlstm.conv1d.conv.weight")[-1]
        kw["qkv_proj_blocksize"] = shape(i, "xlstm.q_proj.weight")[-1]
        inner = shape(i, "xlstm.proj_up.weight")[0] // 2
        kw["mlstm_proj_factor"] = _factor(inner, H, LRAMConfig.__dataclass_fields__["mlstm_proj_factor"].default)
    if slstm_at:
        i = slstm_at[0]
        heads.add(shape(i, SLSTM_KERNEL)[0])
        kw.setdefault("conv1d_kernel_size", shape(i, "xlstm.conv1d.conv.weight")[-1])
        up = shape(i, "ffn.proj_up.weight")[0] // 2
        kw["ffn_proj_factor"] = _factor(up, H, LRAMConfig.__dataclass_fields__["ffn_proj_factor"].default)
    if len(heads) != 1:
        raise CheckpointError(f"{source}: mLSTM and sLSTM blocks disagree on the number of heads: {sorted(heads)}")
    encoders = tuple(e for e, present in (("state", any(k.startswith("embed_state.") for k in sd)),
                                          ("image", any(k.startswith("embed_image.") for k in sd))) if present)
    if not encoders:
        raise CheckpointError(f"{source}: no observation encoder (embed_state.* or embed_image.*)")
    try:
        return LRAMConfig(num_blocks=num_blocks, embedding_dim=H, slstm_at=slstm_at, num_heads=heads.pop(),
                          encoders=encoders, context_timesteps=context_timesteps, **kw)
    except ConfigError as e:
        raise CheckpointError(f"{source}: the weights describe an unsupported architecture: {e}") from None


def _up_dim(factor: float, H: int) -> int:
    """xlstm's projection width: factor * H rounded up to a multiple of 64."""
    return int(math.ceil(factor * H / 64) * 64)


def _factor(dim: int, H: int, default: float) -> float:
    """The nominal projection factor if it reproduces ``dim``, else dim / H (which always does)."""
    return default if _up_dim(default, H) == dim else dim / H


# ---- the Hydra config -------------------------------------------------------------------------------------
# our field -> candidate key paths, most specific first; each is looked for under any dict of that name.
_HYDRA_FIELDS = {
    "num_blocks": [("xlstm_config", "num_blocks"), ("huggingface", "n_layer")],
    "embedding_dim": [("xlstm_config", "embedding_dim"), ("huggingface", "hidden_size")],
    "num_heads": [("huggingface", "n_head"), ("mlstm", "num_heads"), ("slstm", "num_heads")],
    "slstm_at": [("xlstm_config", "slstm_at")],
    "context_timesteps": [("huggingface", "max_length")],
    "context_length": [("xlstm_config", "context_length")],
    "conv1d_kernel_size": [("mlstm", "conv1d_kernel_size"), ("slstm", "conv1d_kernel_size")],
    "qkv_proj_blocksize": [("mlstm", "qkv_proj_blocksize")],
    "ffn_proj_factor": [("feedforward", "proj_factor")],
    "slstm_backend": [("slstm", "backend")],
    "state_dim": [("model_kwargs", "state_dim")],
    "image_shape": [("model_kwargs", "image_shape")],
    "action_channels": [("model_kwargs", "action_channels")],
    "discrete_actions": [("model_kwargs", "discrete_actions")],
}
_INTERP = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def read_hydra_config(hydra_config) -> tuple[dict, str]:
    """A dict, a config.yaml path, or a Hydra run directory (``.hydra/config.yaml`` inside)."""
    if isinstance(hydra_config, Mapping):
        return dict(hydra_config), "<hydra config dict>"
    p = Path(hydra_config)
    if p.is_dir():
        for cand in (p / ".hydra" / "config.yaml", p / "config.yaml"):
            if cand.is_file():
                p = cand
                break
        else:
            raise CheckpointError(f"{hydra_config} holds no .hydra/config.yaml or config.yaml")
    if not p.is_file():
        raise CheckpointError(f"Hydra config {p} does not exist")
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"Hydra config {p} is not valid YAML: {e}") from None
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"Hydra config {p} is not a mapping (got {type(cfg).__name__})")
    return dict(cfg), str(p)


def hydra_architecture(cfg: Mapping) -> tuple[dict, list]:
    """Architecture values found in a composed Hydra config: {field: (value, dotted key path)}, notes."""
    found, notes = {}, []
    for name, candidates in _HYDRA_FIELDS.items():
        for parent, key in candidates:
            hit = _find(cfg, parent, key)
            if hit is None:
                continue
            path, value = hit
            value = _resolve(cfg, value)
            if isinstance(value, str) and "${" in value:
                notes.append(f"config.yaml {path} = {value!r}: interpolation not resolved, ignored")
                continue
            found[name] = (value, path)
            break
    return found, notes


def _find(node, parent: str, key: str, path: str = ""):
    """Depth-first: the first dict named ``parent`` that has ``key``."""
    if not isinstance(node, Mapping):
        return None
    for k, v in node.items():
        p = f"{path}.{k}" if path else str(k)
        if k == parent and isinstance(v, Mapping) and key in v:
            return f"{p}.{key}", v[key]
    for k, v in node.items():
        p = f"{path}.{k}" if path else str(k)
        hit = _find(v, parent, key, p)
        if hit is not None:
            return hit
    return None


def _resolve(root: Mapping, value, depth: int = 0):
    """Resolve a plain absolute ``${a.b.c}`` interpolation (Hydra saves config.yaml unresolved)."""
    m = _INTERP.match(value) if isinstance(value, str) else None
    if not m or depth > 8:
        return value
    node = root
    for part in m.group(1).split("."):
        if not isinstance(node, Mapping) or part not in node:
            return value
        node = node[part]
    return _resolve(root, node, depth + 1)


def cross_check(config: LRAMConfig, found: dict, source: str) -> list:
    """Compare the weights' architecture with the Hydra config's; raise on every conflict (named)."""
    conflicts = []

    def check(name, yaml_value, weights_value, what=None):
        if yaml_value != weights_value:
            path = found[name][1]
            conflicts.append(f"{what or name}: config.yaml {path} = {found[name][0]!r} but the weights have {weights_value!r}")

    def as_int(name):
        v = found[name][0]
        try:
            return int(v)
        except (TypeError, ValueError):
            conflicts.append(f"{name}: config.yaml {found[name][1]} = {v!r} is not an integer")
            return None

    for name in ("num_blocks", "embedding_dim", "num_heads", "conv1d_kernel_size", "qkv_proj_blocksize"):
        if name in found and (v := as_int(name)) is not None:
            check(name, v, getattr(config, name))
    if "slstm_at" in found:
        v = found["slstm_at"][0]
        if v == "all":
            v = list(range(config.num_blocks))
        try:
            v = tuple(sorted(int(i) for i in (v or [])))
        except (TypeError, ValueError):
            conflicts.append(f"slstm_at: config.yaml {found['slstm_at'][1]} = {v!r} is not a list of block indices")
        else:
            check("slstm_at", v, tuple(sorted(config.slstm_at)), "sLSTM blocks (slstm_at)")
    if "ffn_proj_factor" in found and config.slstm_at:
        v, H = found["ffn_proj_factor"][0], config.embedding_dim
        if not isinstance(v, (int, float)) or _up_dim(v, H) != _up_dim(config.ffn_proj_factor, H):
            conflicts.append(f"sLSTM FFN proj_factor: config.yaml {found['ffn_proj_factor'][1]} = {v!r} but the weights "
                             f"have an FFN width of {_up_dim(config.ffn_proj_factor, H)} (proj_factor {config.ffn_proj_factor:g})")
    for name, ours in (("state_dim", MAX_STATE_DIM), ("action_channels", N_BINS), ("discrete_actions", N_DISCRETE)):
        if name in found and (v := as_int(name)) is not None and v != ours:
            conflicts.append(f"{name}: config.yaml {found[name][1]} = {v} but this loader supports {ours} only")
    if "image_shape" in found and "image" in config.encoders:
        v = found["image_shape"][0]
        if list(v or []) != [3, IMAGE_SIZE, IMAGE_SIZE]:
            conflicts.append(f"image_shape: config.yaml {found['image_shape'][1]} = {v!r} but the IMPALA encoder takes [3, 64, 64]")
    if conflicts:
        raise CheckpointError(f"the Hydra config {source} and the weights disagree: " + "; ".join(conflicts))
    return conflicts


def _context_timesteps(found: dict, notes: list) -> int:
    default = LRAMConfig.__dataclass_fields__["context_timesteps"].default
    ts = found.get("context_timesteps", (None,))[0]
    tokens = found.get("context_length", (None,))[0]
    if isinstance(ts, int) and ts > 0:
        if isinstance(tokens, int) and tokens != 3 * ts:
            notes.append(f"config.yaml context_length {tokens} != 3 x max_length {ts}; using {ts} timesteps")
        return ts
    if isinstance(tokens, int) and tokens > 0:
        if tokens % 3:
            notes.append(f"config.yaml context_length {tokens} is not 3 tokens per timestep; using {tokens // 3} timesteps")
        return max(1, tokens // 3)
    return default


# ---- the sLSTM layout ---------------------------------------------------------------------------------------
@torch.no_grad()
def cuda_to_vanilla_slstm(sd: dict, model: LRAM, source: str = "checkpoint") -> list:
    """Convert every sLSTM block's ``_recurrent_kernel_`` and ``_bias_`` in ``sd`` (in place) from the CUDA
    backend's internal layout to that of ``model``'s (vanilla) cells. Returns the converted block indices."""
    converted = []
    for i, block in enumerate(model.encoder.layers.blocks):
        cell = getattr(block.xlstm, "slstm_cell", None)
        if cell is None:
            continue
        cuda = sLSTMCell_cuda(dataclasses.replace(cell.config, backend="cuda"), skip_backend_init=True)
        for name, to_ext, to_int, ours in (
            (SLSTM_KERNEL, cuda._recurrent_kernel_int2ext, cell._recurrent_kernel_ext2int, cell._recurrent_kernel_),
            (SLSTM_BIAS, cuda._bias_int2ext, cell._bias_ext2int, cell._bias_),
        ):
            key = f"encoder.layers.blocks.{i}.{name}"
            if key not in sd:
                continue  # load_weights names it
            t = sd[key]
            want = getattr(cuda, name.rsplit(".", 1)[-1]).shape
            if tuple(t.shape) != tuple(want):
                hint = (" (that is the vanilla backend's layout: was this run trained with backend vanilla? "
                        "pass slstm_layout='vanilla')") if tuple(t.shape) == tuple(ours.shape) else ""
                raise CheckpointError(f"{source}: {key} has shape {tuple(t.shape)}, the CUDA backend's layout for this "
                                      f"block is {tuple(want)}{hint}")
            sd[key] = to_int(to_ext(t)).contiguous().to(ours.dtype if t.is_floating_point() else t.dtype)
        converted.append(i)
    return converted


# ---- the loader ---------------------------------------------------------------------------------------------
def load_reference_zip(zip_path: str | Path, hydra_config=None, task: TaskSpec | None = None, *,
                       slstm_layout: str | None = None) -> LRAM:
    """Build our LRAM from the reference training code's ``model.zip``.

    ``hydra_config``: the run's ``.hydra/config.yaml`` (a path, the run directory, or an already-parsed dict);
    optional, cross-checked against the weights when given. ``task``: the deployment's TaskSpec (required).
    ``slstm_layout``: "cuda" (the reference default) or "vanilla"; default from config.yaml's sLSTM backend,
    else "cuda". The returned model is in eval mode; ``model.reference_report`` says what was done.
    """
    if task is None:
        raise ConfigError("load_reference_zip needs the deployment's TaskSpec (task=...): the reference "
                          "checkpoint is multi-task and does not say which task it serves")
    source = str(zip_path)
    report = ReferenceLoadReport(source=source)
    raw = read_reference_state_dict(zip_path)
    sd, report.stripped_prefixes = strip_prefixes(raw)
    sd, report.dropped_keys = split_unused(sd)
    if report.dropped_keys:
        log.info("%s: dropped %d key(s) the reference model carries but never uses at inference: %s",
                 source, len(report.dropped_keys), ", ".join(report.dropped_keys))

    found = {}
    if hydra_config is not None:
        cfg, ysource = read_hydra_config(hydra_config)
        found, notes = hydra_architecture(cfg)
        report.notes += notes
        report.hydra_values = found
        if not found:
            report.notes.append(f"{ysource}: no architecture keys found; architecture taken from the weights alone")
    context = _context_timesteps(found, report.notes)
    config = infer_config(sd, context_timesteps=context, source=source)
    if hydra_config is not None:
        cross_check(config, found, ysource)
    report.config = config

    layout = slstm_layout or (str(found["slstm_backend"][0]) if "slstm_backend" in found else "cuda")
    if layout not in ("cuda", "vanilla"):
        raise ConfigError(f"slstm_layout must be 'cuda' or 'vanilla', got {layout!r}")
    report.slstm_layout = layout

    try:
        model = LRAM(config, task)
    except ConfigError as e:
        raise CheckpointError(f"{source}: the checkpoint cannot serve this task: {e}") from None
    if layout == "cuda":
        report.converted_slstm_blocks = cuda_to_vanilla_slstm(sd, model, source)
    load_weights(model, sd, source=source)
    model.eval()
    model.reference_report = report
    for note in report.notes:
        log.warning("%s: %s", source, note)
    log.info("%s: loaded a %s LRAM (%d blocks x %d, sLSTM at %s, encoders %s), %d parameters", source,
             config.flavour, config.num_blocks, config.embedding_dim, list(config.slstm_at), list(config.encoders),
             model.parameter_count())
    return model
