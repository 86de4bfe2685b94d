"""Weight-only 8-bit / 4-bit step graph for ONNX Runtime's CPU: ``com.microsoft::MatMulNBits`` on the weight MatMuls.

Tool: ``onnxruntime.quantization``'s ``MatMulNBitsQuantizer`` (round-to-nearest, symmetric, blocks of 32 along
K), which ships with the onnxruntime the project depends on. The nodes are the ones the INT8 pass picks
(``int8.select_nodes``: large weight MatMuls off every block's state recurrence), so the cell, the gates
and every state tensor stay FP32. ``accuracy_level=4`` lets the kernel quantise the activations to int8 on
the fly: measured on the 16M ort-flavour graph at batch 1 (one thread, one interleaved run), 8-bit 0.71x and
4-bit 0.64x the FP32 step; without it (FP32 compute) 8-bit was 3.6x slower and 4-bit 1.1x slower.
MatMulNBits is an ONNX Runtime contrib operator: these graphs are for ONNX Runtime only, like the ort flavour.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .graph import GraphError, load_fp32, save_with_manifest, with_precision
from .int8 import select_nodes

PRECISIONS = {"int8-nbits": 8, "int4-nbits": 4}
BLOCK_SIZE = 32


def write_nbits(src: str | Path, dst: str | Path, precision: str) -> dict:
    """Quantise the FP32 graph at ``src`` (standard or ort flavour) and write it to ``dst``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    model, manifest = load_fp32(src, "quantise", ("standard", "ort", "native"), "lram export")
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    chosen, left = select_nodes(model, manifest)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    q = MatMulNBitsQuantizer(model, bits=PRECISIONS[precision], block_size=BLOCK_SIZE, is_symmetric=True,
                             accuracy_level=4, nodes_to_include=[m.node for m in chosen])
    q.process()
    out = q.model.model
    done = [n.name for n in out.graph.node if n.op_type == "MatMulNBits"]
    if not done:
        raise GraphError("MatMulNBitsQuantizer converted no MatMul")
    info = {"precision": precision, "bits": PRECISIONS[precision], "block_size": BLOCK_SIZE, "accuracy_level": 4,
            "quantized_matmuls": len(done), "fp32_matmuls": [m.node for m in left]}
    save_with_manifest(out, dst, with_precision(manifest, precision),
                       extra={"calibration": {"source": Path(src).name, **info}})
    return info
