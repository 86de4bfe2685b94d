"""The TensorRT AOT plugin module: importable without TensorRT, clear errors, and its definitions driven by a
stand-in for tensorrt.plugin (the real one needs TensorRT >= 10.9, not installable here)."""
import importlib.util
import py_compile
import re
import sys
import types

import pytest

from lram.kernels import build as kb
from lram.kernels import trt_plugins as tp


def test_module_compiles_and_imports_without_tensorrt():
    py_compile.compile(tp.__file__, doraise=True)
    assert "tensorrt" not in sys.modules or importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT installed")
def test_register_without_tensorrt_is_a_clear_error():
    with pytest.raises(tp.PluginError, match="TensorRT is not installed"):
        tp.register()


def test_unknown_plugin_version():
    assert tp.check_plugin_version(None) == "1"
    assert tp.check_plugin_version(b"1") == "1"
    with pytest.raises(tp.PluginError, match="version '2' is not implemented"):
        tp.check_plugin_version("2", "MLSTMCellStep")
    with pytest.raises(tp.PluginError, match="not implemented"):
        tp.register(version="7")


def test_check_onnx_plugin_nodes():
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    def model(version):
        node = helper.make_node("MLSTMCellStep", [f"i{j}" for j in range(9)], [f"o{j}" for j in range(4)],
                                domain="lram", plugin_namespace="lram", plugin_version=version, aot=1)
        return helper.make_model(helper.make_graph([node], "g", [], []))

    assert len(tp.check_onnx_plugin_nodes(model("1"))) == 1
    with pytest.raises(tp.PluginError, match="version '3'"):
        tp.check_onnx_plugin_nodes(model("3"))


# ---- a stand-in for tensorrt.plugin: records the decorated functions ------------------------------
class _Sym:
    def __init__(self, v):
        self.v = v

    is_constant = property(lambda self: isinstance(self.v, int))
    constant_value = property(lambda self: self.v)

    def __mul__(self, o):
        return _Sym(("mul", self.v, o.v if isinstance(o, _Sym) else o))


class _Desc:
    def __init__(self, shape):
        self.shape_expr = list(shape)

    def like(self):
        return _Desc(self.shape_expr)


def _fake_trtp():
    reg = {}
    m = types.SimpleNamespace(TensorDesc=_Desc, AutoTuneCombination=lambda *a: ("ATC", a),
                              KernelLaunchParams=types.SimpleNamespace, SymExprs=tuple,
                              SymInt32=lambda e: e, SymIntExprs=types.SimpleNamespace(from_tuple=tuple))
    for kind in ("register", "autotune", "aot_impl"):
        m.__dict__[kind] = (lambda kind: lambda name: lambda f: reg.setdefault((kind, name), f))(kind)
    return m, reg


def test_definitions_with_stand_in(tmp_path, monkeypatch):
    try:
        kb.find_nvcc()
    except kb.NvccNotFound:
        pytest.skip("nvcc not installed: the AOT impl compiles PTX")
    monkeypatch.setenv("LRAM_KERNEL_CACHE", str(tmp_path))
    trtp, reg = _fake_trtp()
    tp._define(trtp)
    assert {k[1] for k in reg} == {"lram::MLSTMCellStep", "lram::SLSTMCellStep"}

    B = _Sym("batch")
    q = _Desc([B, 3, 4, 256])
    mdescs = [q, q, q, _Desc([B, 3, 4]), _Desc([B, 3, 4]), _Desc([B, 3]), _Desc([B, 4, 256, 256]),
              _Desc([B, 4, 256, 1]), _Desc([B, 4, 1, 1])]
    outs = reg[("register", "lram::MLSTMCellStep")](*mdescs)
    assert [o.shape_expr for o in outs] == [q.shape_expr] + [d.shape_expr for d in mdescs[6:]]
    name, ptx, lp, args = reg[("aot_impl", "lram::MLSTMCellStep")](*mdescs, outs, 0)
    assert name == "lram_mlstm_step_f32" and re.search(rf"\.entry\s+{name}\s*\(", ptx)
    assert (lp.grid_x, lp.block_x, lp.block_y) == (8, 32, 8) and lp.shared_mem > 0
    assert args[0] is B and args[1:] == (3, 4, 256)

    H = 512
    sdescs = [_Desc([B, 3, 4 * H]), _Desc([B, 3])] + [_Desc([B, H]) for _ in range(4)] + [_Desc([4, 512, 128]), _Desc([4 * H])]
    outs = reg[("register", "lram::SLSTMCellStep")](*sdescs)
    assert outs[0].shape_expr == [B, 3, H]
    name, ptx, lp, args = reg[("aot_impl", "lram::SLSTMCellStep")](*sdescs, outs, 0)
    assert name == "lram_slstm_step_f32" and re.search(rf"\.entry\s+{name}\s*\(", ptx)
    assert lp.block_x == 256 and lp.shared_mem == 8 * 128 * 4 and args[2:] == (4, 128)

    with pytest.raises(tp.PluginError, match="static"):
        tp.mlstm_launch((B, 3, 4, _Sym("dyn")))
    with pytest.raises(tp.PluginError, match="exceeds"):
        tp.mlstm_launch((1, 3, 4, 1024))
