"""The native backend's refusals and the heap setting, without torch (what a robot's runtime install runs)."""
from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from lram.runtime.backend import BackendUnavailable
from lram.runtime.backends import make_backend
from lram.runtime.heap import retain_freed_memory
from lram.runtime.native_xlstm import DOMAIN


def _graph_with(tmp_path, op: str):
    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4])  # noqa: E731
    node = helper.make_node(op, ["x"], ["y"], domain=DOMAIN)
    model = helper.make_model(helper.make_graph([node], "g", [f("x")], [f("y")]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    return path


def test_an_unknown_native_node_is_refused_by_name(tmp_path):
    with pytest.raises(BackendUnavailable, match="FutureLayer.*update lram-deploy"):
        make_backend(_graph_with(tmp_path, "FutureLayer"), "ort-cpu")


def test_a_native_graph_is_not_sent_to_a_gpu_provider(tmp_path, monkeypatch):
    import onnxruntime as ort

    from lram.runtime import backend_ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])

    def cpu_session(src, threads, path, providers=()):  # what ONNX Runtime says about an lram.native node
        raise backend_ort.NativeFlavour(f"{path} is the native flavour ({DOMAIN} layer nodes)")

    monkeypatch.setattr(backend_ort, "ort_session", cpu_session)
    with pytest.raises(BackendUnavailable, match="--backend ort-cpu"):
        make_backend(_graph_with(tmp_path, "MLSTMLayer"), "ort-cuda")


def test_freed_memory_stays_in_the_process_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the setting is glibc's")
    assert retain_freed_memory() is True


def test_split_hands_constants_to_the_native_node_and_keeps_the_order():
    import numpy as np
    from onnx import numpy_helper

    from lram.runtime.graph_segments import split

    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4])  # noqa: E731
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "w")
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.ones((1, 4), np.float32))),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("MLSTMLayer", ["r", "k", "w"], ["h"], domain=DOMAIN),
             helper.make_node("Neg", ["h"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [f("x")], [f("y")], initializer=[w]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    first, second = split(model, DOMAIN)
    assert [n.op_type for n in first.segment.model.graph.node] == ["Relu"] and first.segment.outputs == ["r"]
    (native,) = first.natives
    assert native.inputs == ["r", "k", "w"] and set(native.weights) == {"k", "w"}
    np.testing.assert_array_equal(native.weights["k"], np.ones((1, 4), np.float32))
    assert [n.op_type for n in second.segment.model.graph.node] == ["Neg"] and second.segment.inputs == ["h"]
    assert second.natives == []
