"""lram compile: --check with TensorRT for RTX on a small graph; clear errors without TensorRT."""
import importlib.util
import sys

import numpy as np
import pytest
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from lram.cli.compile_commands import compile_  # noqa: E402
from lram.compile import tensorrt_build as tb  # noqa: E402

HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None


def small_graph(path, dynamic_extra=False):
    W = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y0"]), helper.make_node("Add", ["y0", "b"], ["y1"]),
             helper.make_node("Sigmoid", ["y1"], ["y"]), helper.make_node("Mul", ["s", "y"], ["s2"])]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
                           helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", "n" if dynamic_extra else 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
                           helper.make_tensor_value_info("s2", TensorProto.FLOAT, ["batch", 4])], [W, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


@pytest.mark.skipif(not HAS_RTX, reason="tensorrt-rtx not installed (pip install tensorrt-rtx)")
def test_check_with_tensorrt_rtx(tmp_path):
    p = small_graph(tmp_path / "small.onnx")
    r = CliRunner().invoke(compile_, ["--check", str(p), "--max-batch", "4"])
    assert r.exit_code == 0, r.output
    assert "parses and builds with tensorrt_rtx" in r.output
    res = tb.check_graph(p, max_batch=4)
    assert res.inputs["x"] == ((1, 8), (4, 8), (4, 8)) and res.engine_bytes > 0
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.skipif(not HAS_RTX, reason="tensorrt-rtx not installed")
def test_check_rejects_dynamic_non_batch_dims(tmp_path):
    p = small_graph(tmp_path / "dyn.onnx", dynamic_extra=True)
    r = CliRunner().invoke(compile_, ["--check", str(p)])
    assert r.exit_code != 0 and "beyond the batch axis" in r.output


@pytest.mark.skipif(not HAS_RTX, reason="tensorrt-rtx not installed")
def test_check_reports_parser_errors(tmp_path):
    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.save(m, str(tmp_path / "bad.onnx"))
    r = CliRunner().invoke(compile_, ["--check", str(tmp_path / "bad.onnx")])
    assert r.exit_code != 0 and "rejected" in r.output


def test_check_without_any_tensorrt_names_what_to_install(tmp_path, monkeypatch):
    p = small_graph(tmp_path / "small.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    r = CliRunner().invoke(compile_, ["--check", str(p)])
    assert r.exit_code != 0 and "pip install tensorrt-rtx" in r.output


def test_compile_needs_a_manifest(tmp_path):
    p = small_graph(tmp_path / "small.onnx")
    r = CliRunner().invoke(compile_, [str(p), "-o", str(tmp_path / "small.engine")])
    assert r.exit_code != 0 and "manifest" in r.output
    assert not (tmp_path / "small.engine").exists()


def test_compile_without_tensorrt_is_a_clear_error(tmp_path, monkeypatch):
    p = small_graph(tmp_path / "small.onnx")
    monkeypatch.setattr(tb, "read_manifest", lambda path: None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    r = CliRunner().invoke(compile_, [str(p)])
    assert r.exit_code != 0 and "TensorRT is not installed" in r.output


def test_lram_cli_maps_compile():
    from lram.cli.main import cli

    r = CliRunner().invoke(cli, ["compile", "--help"])
    assert r.exit_code == 0 and "--max-batch" in r.output and "--check" in r.output
    assert "What --check proves" in r.output and "What it does not prove" in r.output and "plugin" in r.output
