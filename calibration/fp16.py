"""FP16 step graph: the weight MatMuls in FP16, everything else (the state path and the stabiliser math) in FP32.

Each MatMul with a constant weight that is not on a block's state recurrence becomes
``Cast(x -> fp16) -> MatMul(x16, W16) -> Cast(-> fp32)``: its weight is stored in FP16 (half the bytes, which
is what a memory-bound step pays for) and its product runs in FP16. The casts are explicit in the graph, so
the precision is the graph's own and holds for a strongly typed TensorRT network (10.x, and 11.x which has no
precision flags) and for ONNX Runtime alike. What stays FP32, by construction:

- every graph input and output, so every state tensor (state_in.* / state_out.*): the runtime and its slots
  do not change;
- the cell math: the stabiliser m, the exponential gates (Exp, Softplus, Max), the n normalisation, the C and
  n updates and the readout MatMuls against C and n (those have no constant weight and are never touched);
- the sLSTM recurrent kernel h @ R (on the recurrence), LayerNorms, biases, residual adds, the decode.

Measured on this x86 CPU (AMD EPYC, AVX-512 but no AVX512-FP16): ONNX Runtime's CPU provider has no FP16
MatMul kernel here and falls back to casts around an FP32 MatMul, so FP16 is for the GPU (TensorRT /
CUDA); on the CPU it buys size on disk, not speed. ``tests/calibration/test_bench_precision.py`` measures it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lram.runtime.manifest import Manifest

from .graph import GraphError, load_fp32, replace_nodes, save_with_manifest, weight_matmuls, with_precision

FP16_MAX = 65504.0


def convert_fp16(model: onnx.ModelProto, manifest: Manifest) -> tuple[onnx.ModelProto, dict]:
    """Return (converted copy, info). ``model`` is not modified."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    mms = weight_matmuls(out, manifest)
    chosen = {m.index: m for m in mms if not m.recurrent}
    if not chosen:
        raise GraphError("no weight MatMul off the state recurrence to convert")
    inits = {i.name: i for i in g.initializer}
    new_nodes, cast_in, w16 = [], {}, {}
    for i, node in enumerate(g.node):
        m = chosen.get(i)
        if m is None:
            new_nodes.append(node)
            continue
        if m.weight not in w16:
            w = numpy_helper.to_array(inits[m.weight])
            peak = float(np.abs(w).max()) if w.size else 0.0
            if not np.isfinite(peak) or peak > FP16_MAX:
                raise GraphError(f"weight {m.weight} of {m.node} has |w| = {peak:g}, beyond FP16's range")
            name = m.weight + "__fp16"
            g.initializer.append(numpy_helper.from_array(w.astype(np.float16), name))
            w16[m.weight] = name
        if m.activation not in cast_in:
            name = m.activation + "__fp16"
            new_nodes.append(helper.make_node("Cast", [m.activation], [name], to=TensorProto.FLOAT16,
                                              name=f"{m.node}/cast_in_fp16"))
            cast_in[m.activation] = name
        mid = m.output + "__fp16"
        new_nodes.append(helper.make_node("MatMul", [cast_in[m.activation], w16[m.weight]], [mid], name=m.node + "_fp16"))
        new_nodes.append(helper.make_node("Cast", [mid], [m.output], to=TensorProto.FLOAT, name=f"{m.node}/cast_out_fp32"))
    replace_nodes(g, new_nodes)
    info = {
        "converted_matmuls": len(chosen),
        "kept_fp32_matmuls": [m.node for m in mms if m.recurrent],
        "fp16_weight_elements": int(sum(m.elements for m in chosen.values())),
    }
    return out, info


def write_fp16(src: str | Path, dst: str | Path) -> dict:
    """Convert the graph at ``src`` and write it (with its manifest, precision "fp16") to ``dst``."""
    model, manifest = load_fp32(src, "convert")
    conv, info = convert_fp16(model, manifest)
    save_with_manifest(conv, dst, with_precision(manifest, "fp16"),
                       extra={"calibration": {"precision": "fp16", "source": Path(src).name, **info}})
    return info
