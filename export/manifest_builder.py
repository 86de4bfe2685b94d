"""Builds the manifest (lram.runtime.manifest) that describes an exported step graph."""
from __future__ import annotations

import sys

from lram.model.config import MAX_ACTION_DIMS, MAX_STATE_DIM, N_BINS, VOCAB, config_hash
from lram.runtime.manifest import BATCH, Manifest, TensorSpec

from .step_graph import StepGraph


def _versions() -> dict:
    out = {}
    for mod in ("lram", "torch", "xlstm", "onnx", "onnxruntime"):
        try:
            if mod == "lram":
                from importlib.metadata import version

                out["lram-deploy"] = version("lram-deploy")
            else:
                out[mod] = __import__(mod).__version__
        except Exception:  # a producer version is informative, never required
            pass
    out["python"] = sys.version.split()[0]
    return out


def build_manifest(graph: StepGraph, opset: int, with_logits: bool = True) -> Manifest:
    """The manifest of ``graph``: its state is what its blocks declare (see cells.StatePart)."""
    task, config = graph.task, graph.config
    if task.obs_kind == "state":
        obs = TensorSpec("obs", [BATCH, task.obs_shape[0]], "float32")
        observation = {"kind": "state", "shape": list(task.obs_shape), "dtype": "float32", "pad_to": MAX_STATE_DIM,
                       "low": list(task.obs_low) if task.obs_low else None,
                       "high": list(task.obs_high) if task.obs_high else None}
    else:
        obs = TensorSpec("obs", [BATCH, *task.obs_shape], "uint8")
        observation = {"kind": "image", "shape": list(task.obs_shape), "dtype": "uint8", "scale": 1.0 / 255.0}
    if task.action_kind == "continuous":
        action_out = TensorSpec("action", [BATCH, task.action_dim], "float32")
        action = {"kind": "continuous", "shape": [task.action_dim], "low": list(task.action_low),
                  "high": list(task.action_high), "decode": task.action_decode, "bins": N_BINS}
    else:
        action_out = TensorSpec("action", [BATCH], "int64")
        action = {"kind": "discrete", "n": task.action_n, "decode": task.action_decode}  # the same under every rule
    state = graph.state
    inputs = [obs, TensorSpec("rtg", [BATCH, 1], "float32"), TensorSpec("prev_reward", [BATCH, 1], "float32"),
              TensorSpec("first", [BATCH], "bool")]
    inputs += [TensorSpec(s.input, [BATCH, *s.shape], s.dtype) for s in state]
    outputs = [action_out]
    if with_logits:
        outputs.append(TensorSpec("logits", [BATCH, MAX_ACTION_DIMS, VOCAB], "float32"))
    outputs += [TensorSpec(s.output, [BATCH, *s.shape], s.dtype) for s in state]
    return Manifest(
        inputs=inputs, outputs=outputs, state=state, observation=observation, action=action,
        reward_scale=float(task.reward_scale), opset=opset, flavour=graph.flavour,
        model={"config": config.to_dict(), "task": task.to_dict(), "config_hash": config_hash(config, task),
               "parameters": graph.parameters_count, "flavour": config.flavour},
        producer=_versions(), target_return=task.target_return,
    )
