"""A small but genuine recurrent step graph that follows the lram step-graph contract exactly.

The real exporter is written elsewhere; the runtime's tests must not depend on it (or on torch). This
builder writes an ONNX graph with the same I/O contract: state tensors in and out, a ``first`` flag that
zeroes a row's state and drops its reward token, actions clipped to the manifest's bounds. Weights are
random and non-trivial so that a test comparing states or actions can actually fail.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lram.runtime.manifest import BATCH, Manifest, METADATA_KEY, StateSpec, TensorSpec, sidecar_path

OPSET = 17
HIDDEN = 16
C_SHAPE = [4, 8, 8]


def make_manifest(
    obs_dim: int = 3,
    act_dim: int = 1,
    low: float = -2.0,
    high: float = 2.0,
    obs_low=None,
    obs_high=None,
    image: bool = False,
    discrete: int | None = None,
    logits: bool = False,
    target_return: float | None = 100.0,
    reward_scale: float = 10.0,
) -> Manifest:
    if image:
        observation = {"kind": "image", "shape": [64, 64, 3], "dtype": "uint8", "scale": 1 / 255}
        obs_in = TensorSpec("obs", [BATCH, 64, 64, 3], "uint8")
    else:
        observation = {"kind": "state", "shape": [obs_dim], "dtype": "float32", "pad_to": 204,
                       "low": obs_low, "high": obs_high}
        obs_in = TensorSpec("obs", [BATCH, obs_dim], "float32")
    if discrete:
        action = {"kind": "discrete", "n": int(discrete)}
        act_out = TensorSpec("action", [BATCH], "int64")
    else:
        action = {"kind": "continuous", "shape": [act_dim], "low": [low] * act_dim, "high": [high] * act_dim,
                  "decode": "bin_center", "bins": 256}
        act_out = TensorSpec("action", [BATCH, act_dim], "float32")
    state = [StateSpec("0.C", list(C_SHAPE)), StateSpec("1.h", [HIDDEN])]
    inputs = [obs_in, TensorSpec("rtg", [BATCH, 1], "float32"), TensorSpec("prev_reward", [BATCH, 1], "float32"),
              TensorSpec("first", [BATCH], "bool")] + [TensorSpec(s.input, [BATCH] + s.shape, "float32") for s in state]
    outputs = [act_out] + ([TensorSpec("logits", [BATCH, 8, 274], "float32")] if logits else [])
    outputs += [TensorSpec(s.output, [BATCH] + s.shape, "float32") for s in state]
    return Manifest(inputs=inputs, outputs=outputs, state=state, observation=observation, action=action,
                    reward_scale=reward_scale, opset=OPSET, model={"name": "fake"}, producer={"name": "tests.fake_policy"},
                    target_return=target_return)


_DT = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "bool": TensorProto.BOOL, "int64": TensorProto.INT64}


def _vi(spec: TensorSpec):
    return helper.make_tensor_value_info(spec.name, _DT[spec.dtype], spec.shape)


def build_graph(manifest: Manifest, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    obs = manifest.observation
    in_dim = int(np.prod(obs["shape"]))
    n_c = int(np.prod(C_SHAPE))
    inits = []

    def w(name, *shape, scale=1.0):
        arr = (rng.standard_normal(shape) * scale / np.sqrt(shape[0] if len(shape) > 1 else 1)).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    n = []  # nodes
    # keep = 1 - first: rows starting an episode begin from zero state and skip the reward token
    n.append(helper.make_node("Cast", ["first"], ["first_f"], to=TensorProto.FLOAT))
    n.append(helper.make_node("Sub", [const("one", 1.0), "first_f"], ["keep"]))
    n.append(helper.make_node("Unsqueeze", ["keep", const("ax1", [1], np.int64)], ["keep2"]))
    n.append(helper.make_node("Reshape", ["keep", const("shp4", [-1, 1, 1, 1], np.int64)], ["keep4"]))
    if obs["kind"] == "image":
        n.append(helper.make_node("Cast", ["obs"], ["obs_f"], to=TensorProto.FLOAT))
        n.append(helper.make_node("Reshape", ["obs_f", const("flat", [0, -1], np.int64)], ["obs_flat"]))
        n.append(helper.make_node("Mul", ["obs_flat", const("iscale", 1 / 255)], ["obs_x"]))
    else:
        n.append(helper.make_node("Identity", ["obs"], ["obs_x"]))
    n.append(helper.make_node("Div", ["rtg", const("rs", manifest.reward_scale)], ["rtg_s"]))
    n.append(helper.make_node("Div", ["prev_reward", "rs"], ["rew_s"]))
    n.append(helper.make_node("Mul", ["rew_s", "keep2"], ["rew_k"]))
    n.append(helper.make_node("Concat", ["obs_x", "rtg_s", "rew_k"], ["x"], axis=1))
    n.append(helper.make_node("Mul", ["state_in.0.C", "keep4"], ["C0"]))
    n.append(helper.make_node("Mul", ["state_in.1.h", "keep2"], ["h0"]))
    # h' = tanh(x W1 + h0 U1 + b1)
    n.append(helper.make_node("MatMul", ["x", w("W1", in_dim + 2, HIDDEN, scale=2.0)], ["xw"]))
    n.append(helper.make_node("MatMul", ["h0", w("U1", HIDDEN, HIDDEN, scale=1.5)], ["hu"]))
    n.append(helper.make_node("Add", ["xw", "hu"], ["pre0"]))
    n.append(helper.make_node("Add", ["pre0", w("b1", HIDDEN, scale=0.5)], ["pre"]))
    n.append(helper.make_node("Tanh", ["pre"], ["state_out.1.h"]))
    # C' = tanh(a * C0 + reshape(h' W2))
    n.append(helper.make_node("MatMul", ["state_out.1.h", w("W2", HIDDEN, n_c, scale=1.0)], ["hw2"]))
    n.append(helper.make_node("Reshape", ["hw2", const("cshape", [-1] + C_SHAPE, np.int64)], ["hw2r"]))
    n.append(helper.make_node("Mul", ["C0", const("decay", rng.uniform(0.5, 0.95, C_SHAPE))], ["C0a"]))
    n.append(helper.make_node("Add", ["C0a", "hw2r"], ["Cpre"]))
    n.append(helper.make_node("Tanh", ["Cpre"], ["state_out.0.C"]))
    # readout from both states
    n.append(helper.make_node("ReduceMean", ["state_out.0.C"], ["cm"], axes=[2, 3], keepdims=0))
    n.append(helper.make_node("Concat", ["state_out.1.h", "cm"], ["y"], axis=1))
    act = manifest.action
    if act["kind"] == "discrete":
        n.append(helper.make_node("MatMul", ["y", w("Wa", HIDDEN + 4, act["n"], scale=2.0)], ["za"]))
        n.append(helper.make_node("ArgMax", ["za"], ["action"], axis=1, keepdims=0))
    else:
        d = act["shape"][0]
        lo, hi = np.asarray(act["low"], np.float32), np.asarray(act["high"], np.float32)
        n.append(helper.make_node("MatMul", ["y", w("Wa", HIDDEN + 4, d, scale=1.0)], ["za"]))
        n.append(helper.make_node("Tanh", ["za"], ["ta"]))
        # deliberately overshoot the bounds by 10 % and clip: the contract says "already within bounds"
        n.append(helper.make_node("Mul", ["ta", const("half", (hi - lo) / 2 * 1.1)], ["sa"]))
        n.append(helper.make_node("Add", ["sa", const("mid", (hi + lo) / 2)], ["ua"]))
        n.append(helper.make_node("Max", ["ua", const("lo", lo)], ["ma"]))
        n.append(helper.make_node("Min", ["ma", const("hi", hi)], ["action"]))
    if any(o.name == "logits" for o in manifest.outputs):
        n.append(helper.make_node("MatMul", ["y", w("Wl", HIDDEN + 4, 8 * 274)], ["lf"]))
        n.append(helper.make_node("Reshape", ["lf", const("lshape", [-1, 8, 274], np.int64)], ["logits"]))
    graph = helper.make_graph(n, "fake_lram_step", [_vi(t) for t in manifest.inputs], [_vi(t) for t in manifest.outputs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.fake_policy")
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: manifest.to_json()})
    onnx.checker.check_model(model)
    return model


def write_fake_policy(path, manifest: Manifest | None = None, seed: int = 0, sidecar: bool = True,
                      metadata: bool = True) -> Path:
    """Write ``path`` (.onnx) and, by default, its ``.manifest.json`` sidecar; returns the .onnx path."""
    manifest = manifest or make_manifest()
    model = build_graph(manifest, seed=seed)
    if not metadata:
        del model.metadata_props[:]
    path = Path(path)
    onnx.save(model, str(path))
    if sidecar:
        sidecar_path(path).write_text(manifest.to_json())
    return path


def write_pendulum_policy(path):
    """3-dim obs, 1-dim action in [-2, 2]: fits gym Pendulum-v1."""
    return write_fake_policy(path, make_manifest(obs_dim=3, act_dim=1, low=-2.0, high=2.0, obs_low=[-1.0, -1.0, -8.0],
                                                 obs_high=[1.0, 1.0, 8.0], target_return=0.0))
