"""INT8 step graph: Q/DQ on the weight MatMuls, calibrated on recorded closed-loop data; state path in FP32.

Tool: ``onnxruntime.quantization`` (``quantize_static``, QDQ format), not NVIDIA ModelOpt. It ships with the
onnxruntime this project already depends on (ModelOpt pulls a large install, CUDA torch with its full
extras), it quantises exactly the nodes we name (ModelOpt's GEMV detection measured 0 quantised nodes at
batch 1 unless told otherwise), and it writes standard QuantizeLinear / DequantizeLinear pairs that both ONNX
Runtime's CPU provider and TensorRT (10.x strongly typed, 11.x) consume.

What is quantised (``select_nodes``): MatMuls with a constant FP32 weight that are off every block's state
recurrence (``graph.weight_matmuls``), minus the tiny ones (K = 1 return / reward embeddings, the mLSTM gate
projection [3I, 2NH]: no bytes to save, and the gate pre-activations feed exp()). Never quantised: the cell
(C / n / m updates, the readouts against C and n, the exponential gates), the sLSTM recurrent kernel,
LayerNorms, every graph input and output (so every state tensor stays FP32).

Modes:
- ``static`` (default): INT8 weights, symmetric per output channel; INT8 activations, symmetric per tensor,
  ranges from the recorded data (MinMax or a percentile). Symmetric signed INT8 is what TensorRT wants
  (zero point 0) and what lets ONNX Runtime's CPU provider run integer MatMuls.
- ``weights``: INT8 weights with a DequantizeLinear in front of an FP32 MatMul; no activation ranges, no
  calibration data needed. Smaller file, same accuracy class as FP32 activations; on the CPU the speed depends on
  whether the runtime keeps the weight in INT8 (measure: ONNX Runtime may fold the DequantizeLinear back).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lram.runtime.manifest import Manifest

from .graph import (GraphError, WeightMatMul, load_fp32, replace_nodes, save_with_manifest, weight_matmuls,
                    with_precision)
from .record import CalibrationSet

MODES = ("static", "weights")
METHODS = ("minmax", "percentile")
MIN_WEIGHT_ELEMENTS = 4096  # below this a MatMul's weight is not worth a Q/DQ pair


def select_nodes(model: onnx.ModelProto, manifest: Manifest,
                 min_elements: int = MIN_WEIGHT_ELEMENTS) -> tuple[list[WeightMatMul], list[WeightMatMul]]:
    """(to quantise, left in FP32) among the weight MatMuls."""
    chosen, left = [], []
    for m in weight_matmuls(model, manifest):
        # K = 1 (return / reward embeddings), N < 64 (the mLSTM gate pre-activations, which feed exp()), or tiny
        small = m.elements < min_elements or m.shape[-2] == 1 or m.shape[-1] < 64
        (left if m.recurrent or small else chosen).append(m)
    if not chosen:
        raise GraphError("no weight MatMul large enough and off the state recurrence to quantise")
    return chosen, left


def _reader(cs: CalibrationSet, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Feeds the recorded graph inputs, recurrent state included, ``batch`` samples per call."""

        def __init__(self):
            self._it = iter(cs.batches(batch))

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(cs.batches(batch))

    return Reader()


def quantize_static_graph(model: onnx.ModelProto, manifest: Manifest, cs: CalibrationSet, method: str = "minmax",
                          percentile: float = 99.99, batch: int = 16, min_elements: int = MIN_WEIGHT_ELEMENTS
                          ) -> tuple[onnx.ModelProto, dict]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    chosen, left = select_nodes(model, manifest, min_elements)
    names = [m.node for m in chosen]
    with tempfile.TemporaryDirectory(prefix="lram-int8-") as tmp:
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save(model, src)
        extra = {
            "ActivationSymmetric": True, "WeightSymmetric": True, "MatMulConstBOnly": True,
            # no Q/DQ on MatMul outputs: the products (q, k, v, gate inputs, residual adds) stay FP32
            "OpTypesToExcludeOutputQuantization": ["MatMul"],
            # per output channel = the weight's last axis (also right for the sLSTM's [NH, DH, 2DH] head weights)
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": -1},
        }
        # Batched (rank-3) weights, the sLSTM's per-head [NH, DH, 2DH] gate projections, get one scale per tensor:
        # DequantizeLinear's per-axis scale is 1-D, and ONNX Runtime's CPU fusion of a rank-3 per-channel weight
        # (MatMulIntegerToFloat) fails at run time ("b zero point is not valid"; onnxruntime 1.32, measured).
        rank3 = {m.weight: [{"symmetric": True}] for m in chosen if len(m.shape) == 3}
        if rank3:
            extra["TensorQuantOverrides"] = rank3
        if method == "percentile":
            extra["CalibPercentile"] = float(percentile)
        quantize_static(
            src, dst, _reader(cs, batch), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
            nodes_to_quantize=names, per_channel=True, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, reduce_range=False,
            calibrate_method=CalibrationMethod.MinMax if method == "minmax" else CalibrationMethod.Percentile,
            extra_options=extra,
        )
        out = onnx.load(dst)
    info = {"mode": "static", "method": method, "percentile": percentile if method == "percentile" else None,
            "quantized_matmuls": len(chosen), "fp32_matmuls": [m.node for m in left],
            "int8_weight_elements": int(sum(m.elements for m in chosen)), "calibration_samples": len(cs)}
    return out, info


def quantize_weights_only(model: onnx.ModelProto, manifest: Manifest, min_elements: int = MIN_WEIGHT_ELEMENTS) -> tuple[onnx.ModelProto, dict]:
    """INT8 weights, symmetric per output channel, behind DequantizeLinear; activations stay FP32."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    chosen, left = select_nodes(out, manifest, min_elements)
    by_index = {m.index: m for m in chosen}
    inits = {i.name: i for i in g.initializer}
    nodes, done = [], {}
    for i, node in enumerate(g.node):
        m = by_index.get(i)
        if m is not None and m.weight not in done:
            w = numpy_helper.to_array(inits[m.weight]).astype(np.float32)
            amax = np.abs(w).max(axis=tuple(range(w.ndim - 1)))  # per last axis (output channel)
            scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            qn, sn, zn, dn = (m.weight + s for s in ("__int8", "__scale", "__zero", "__dq"))
            g.initializer.extend([numpy_helper.from_array(q, qn), numpy_helper.from_array(scale, sn),
                                  numpy_helper.from_array(np.zeros_like(scale, np.int8), zn)])
            nodes.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [dn], axis=w.ndim - 1, name=m.node + "/dq_weight"))
            done[m.weight] = dn
        if m is not None:
            node = helper.make_node("MatMul", [m.activation, done[m.weight]], [m.output], name=m.node)
        nodes.append(node)
    replace_nodes(g, nodes)
    info = {"mode": "weights", "quantized_matmuls": len(chosen), "fp32_matmuls": [m.node for m in left],
            "int8_weight_elements": int(sum(m.elements for m in chosen))}
    return out, info


def write_int8(src: str | Path, dst: str | Path, cs: CalibrationSet | None, mode: str = "static", **kw) -> dict:
    """Quantise the graph at ``src`` and write it (manifest precision "int8") to ``dst``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    model, manifest = load_fp32(src, "quantise")
    if mode == "static":
        if cs is None:
            raise GraphError("static INT8 needs calibration data")
        q, info = quantize_static_graph(model, manifest, cs, **kw)
        info["calibration_data"] = {k: cs.meta.get(k) for k in ("env", "seeds", "episodes", "samples", "config_hash")}
    else:
        q, info = quantize_weights_only(model, manifest, **{k: v for k, v in kw.items() if k == "min_elements"})
    check_int8_graph(q, manifest)
    save_with_manifest(q, dst, with_precision(manifest, "int8"),
                       extra={"calibration": {"precision": "int8", "source": Path(src).name, **info}})
    return info


def check_int8_graph(model: onnx.ModelProto, manifest: Manifest) -> None:
    """Only standard ops; every graph input and output keeps its FP32/bool type (state stays FP32)."""
    state_io = {n for spec in manifest.state for n in (spec.input, spec.output)}
    foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise GraphError(f"the INT8 graph uses non-standard op domains {foreign}")
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name in state_io and v.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise GraphError(f"state tensor {v.name} is not FP32 in the INT8 graph")
