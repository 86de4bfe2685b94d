"""Our checkpoint format: a directory with ``config.json`` (format version, model config, task) and
``model.safetensors``. Written atomically: a crash never leaves a half-written checkpoint behind."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, LRAMConfig, TaskSpec, config_hash
from .index_files import read_index
from .lram import LRAM

FORMAT = "lram-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing, foreign, of another version, or does not match its config."""


def save_checkpoint(model: LRAM, path: str | Path, extra: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "task": model.task.to_dict(),
        "config_hash": config_hash(model.config, model.task),
        "parameters": model.parameter_count(),
        "extra": extra or {},
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a checkpoint is meant to be shared
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous checkpoint back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not an lram checkpoint directory (expected {CONFIG_FILE} + {WEIGHTS_FILE}); "
            "a reference-code model.zip is loaded with --env DOMAIN:TASK [--hydra-config RUN_DIR] (load_reference_zip)"
        )
    cfg = path / CONFIG_FILE
    meta = read_index(cfg, FORMAT, CheckpointError,
                      f"checkpoint {path} has no {CONFIG_FILE}: the model config is needed to rebuild the model",
                      "lram checkpoint config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg} has format_version {meta.get('format_version')!r}; this version reads {FORMAT_VERSION}")
    return meta


def load_checkpoint(path: str | Path) -> LRAM:
    path = Path(path)
    meta = read_checkpoint_meta(path)
    try:
        model = LRAM(LRAMConfig.from_dict(meta["model"]), TaskSpec.from_dict(meta["task"]))
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: bad model or task config: {e}") from None
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise CheckpointError(f"checkpoint {path} has no {WEIGHTS_FILE}")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {e}") from None
    load_weights(model, tensors, source=str(weights))
    model.eval()
    return model


def load_weights(model: torch.nn.Module, tensors: dict, source: str) -> None:
    """Strict load with an error that names every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if missing or unexpected or misshaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                shown = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
                parts.append(f"{len(items)} {label} key(s): {shown}")
        raise CheckpointError(f"weights in {source} do not match the model config: " + "; ".join(parts))
    model.load_state_dict({k: tensors[k].to(v.dtype) for k, v in expected.items()})
