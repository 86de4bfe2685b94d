"""The FP16 and INT8 graphs: what is converted, what stays FP32, and that they still run and agree."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from lram.calibration.graph import GraphError, recurrent_nodes, weight_matmuls
from lram.runtime.model_files import read_manifest
from lram.runtime.manifest import sidecar_path

from .conftest import run_side_by_side

STABILISER_OPS = {"Exp", "Softplus", "Max", "CumSum", "Abs", "Div", "Where", "Trilu", "LayerNormalization"}


def _types(path):
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    t = {v.name: v.type.tensor_type.elem_type for v in (*m.graph.value_info, *m.graph.input, *m.graph.output)}
    t.update({i.name: i.data_type for i in m.graph.initializer})
    return m, t


def test_fp16_keeps_state_and_stabiliser_fp32(fp32_graph, fp16_graph):
    m, types = _types(fp16_graph)
    for v in (*m.graph.input, *m.graph.output):  # every state tensor (and every other I/O) unchanged
        if v.name.startswith(("state_in.", "state_out.")):
            assert v.type.tensor_type.elem_type == TensorProto.FLOAT, v.name
    fp16_inits = [i for i in m.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert fp16_inits, "no FP16 weights"
    for n in m.graph.node:
        if n.op_type in STABILISER_OPS:
            assert all(types.get(x) != TensorProto.FLOAT16 for x in (*n.input, *n.output) if x), (n.name, n.op_type)
    # the readouts against C / n and the C update products have no constant weight: untouched, FP32
    for n in m.graph.node:
        if n.op_type == "MatMul" and not any(x.endswith("__fp16") for x in n.input):
            assert all(types.get(x) == TensorProto.FLOAT for x in n.input), n.name
    # the sLSTM recurrent kernel (on the recurrence) stays FP32
    src = onnx.load(str(fp32_graph))
    rec = {w.node for w in weight_matmuls(src, read_manifest(fp32_graph)) if w.recurrent}
    assert rec and all(n.name in rec for n in m.graph.node if n.name in rec)
    assert not any(n.name + "_fp16" in {x.name for x in m.graph.node} for n in src.graph.node if n.name in rec)
    # every FP16 MatMul is wrapped in explicit casts
    casts = {n.output[0]: n for n in m.graph.node if n.op_type == "Cast"}
    for n in m.graph.node:
        if n.op_type == "MatMul" and n.name.endswith("_fp16"):
            assert casts[n.input[0]].attribute[0].i == TensorProto.FLOAT16
    assert read_manifest(fp16_graph).precision == "fp16"
    assert json.loads(sidecar_path(fp16_graph).read_text())["precision"] == "fp16"


def test_fp16_runs_and_tracks_fp32(fp32_graph, fp16_graph, calib):
    logit, state = run_side_by_side(fp32_graph, fp16_graph, calib, steps=200)
    # measured 2e-3 logits / 4e-3 state on the perturbed tiny model; FP16 has ~3 significant digits
    assert logit < 0.05 and state < 0.02, (logit, state)


def test_int8_qdq_only_on_weight_matmuls(fp32_graph, int8_graph):
    src = onnx.load(str(fp32_graph))
    rec_names = {src.graph.node[i].name for i in recurrent_nodes(src, read_manifest(fp32_graph))}
    m = onnx.load(str(int8_graph))
    inits = {i.name: i for i in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    consumers = {}
    for n in m.graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    assert {n.domain for n in m.graph.node} <= {"", "ai.onnx"}
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert dq and q
    quantised = set()
    for n in dq:
        users = consumers.get(n.output[0], [])
        assert users and all(u.op_type == "MatMul" for u in users), n.name
        quantised |= {u.name for u in users}
    for n in q:  # activations: Q -> DQ -> MatMul, never on a state tensor
        assert not n.input[0].startswith("state_in."), n.name
        assert all(u.op_type == "DequantizeLinear" for u in consumers[n.output[0]])
    for name in quantised:
        node = next(x for x in m.graph.node if x.name == name)
        w = producers[node.input[1]]  # the weight comes from a DQ of an INT8 initializer
        assert w.op_type == "DequantizeLinear" and inits[w.input[0]].data_type == TensorProto.INT8
        assert name not in rec_names
        assert not any(x.startswith("state_in.") for x in node.input)
    for v in (*m.graph.input, *m.graph.output):
        if v.name.startswith(("state_in.", "state_out.")):
            assert v.type.tensor_type.elem_type == TensorProto.FLOAT
    assert read_manifest(int8_graph).precision == "int8"


def test_int8_runs_and_stays_close(fp32_graph, int8_graph, calib):
    logit, state = run_side_by_side(fp32_graph, int8_graph, calib, steps=200)
    assert np.isfinite(logit) and state < 0.2, (logit, state)


def test_weights_only_int8(fp32_graph, calib, tmp_path):
    from lram.calibration.int8 import write_int8

    out = tmp_path / "w8.onnx"
    info = write_int8(fp32_graph, out, None, mode="weights", min_elements=1024)
    assert info["quantized_matmuls"] > 0
    m = onnx.load(str(out))
    assert not [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    logit, state = run_side_by_side(fp32_graph, out, calib, steps=100)
    assert state < 0.2


def test_refuses_converted_input(fp16_graph, tmp_path):
    from lram.calibration.fp16 import write_fp16

    with pytest.raises(GraphError, match="already fp16"):
        write_fp16(fp16_graph, tmp_path / "x.onnx")
