"""Weight-only MatMulNBits graphs: the chosen weight MatMuls only, every state tensor FP32, close to FP32 at 8 bits,
further at 4 bits, and only from an FP32 standard or ort graph."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from lram.calibration.graph import GraphError
from lram.calibration.nbits import write_nbits
from lram.runtime.model_files import read_manifest
from lram.verify.runners import GraphRunner


def _logits(path, steps=30, B=2):
    runner = GraphRunner(path)
    runner.reset(B)
    rng = np.random.default_rng(0)
    for t in range(steps):
        out = runner.step(rng.standard_normal((B, 3)).astype(np.float32), np.full(B, -100, np.float32),
                          rng.standard_normal(B).astype(np.float32), np.full(B, t == 0))
    return out.logits


def test_nbits_graphs(fp32_graph, tmp_path):
    ref = _logits(fp32_graph)
    errors = {}
    for precision in ("int8-nbits", "int4-nbits"):
        out = tmp_path / f"{precision}.onnx"
        info = write_nbits(fp32_graph, out, precision)
        m = onnx.load(out)
        manifest = read_manifest(out)
        assert manifest.precision == precision
        assert sum(n.op_type == "MatMulNBits" for n in m.graph.node) == info["quantized_matmuls"] > 0
        state_out = {s.output for s in manifest.state}
        assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in m.graph.output if o.name in state_out)
        errors[precision] = float(np.abs(_logits(out) - ref).max())
    assert 0 < errors["int8-nbits"] < 0.05 * np.abs(ref).max() and errors["int4-nbits"] > errors["int8-nbits"]
    with pytest.raises(GraphError, match="already int8-nbits"):
        write_nbits(tmp_path / "int8-nbits.onnx", tmp_path / "again.onnx", "int8-nbits")
