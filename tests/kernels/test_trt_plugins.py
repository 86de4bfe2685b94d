"""The TensorRT AOT plugin module: importable without TensorRT, clear errors, and its definitions driven by a
stand-in for tensorrt.plugin (the real one needs TensorRT >= 10.9, not installable here)."""
import importlib.util
import json
import py_compile
import sys
import types

import pytest

from lram.kernels import build as kb
from lram.kernels import interpret
from lram.kernels import trt_plugins as tp

sk = interpret.kernels()


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

    def _op(name):
        return lambda self, o: _Sym((name, self.v, o.v if isinstance(o, _Sym) else o))

    __mul__, __add__, __floordiv__ = _op("mul"), _op("add"), _op("floordiv")


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


def test_definitions_with_stand_in(aot_dir, monkeypatch):
    out, r = aot_dir
    assert r.returncode == 0, r.stderr[-2000:]
    monkeypatch.setenv("LRAM_KERNEL_DIR", str(out))
    trtp, reg = _fake_trtp()
    tp._define(trtp)
    assert {k[1] for k in reg} == {"lram::MLSTMCellStep", "lram::SLSTMCellStep"}
    res = json.loads((out / "resources.json").read_text())["kernels"]

    B = _Sym("batch")
    q = _Desc([B, 3, 4, 256])
    mdescs = [q, q, q, _Desc([B, 3, 4]), _Desc([B, 3, 4]), _Desc([B, 3]), _Desc([B, 4, 256, 256]),
              _Desc([B, 4, 256, 1]), _Desc([B, 4, 1, 1])]
    outs = reg[("register", "lram::MLSTMCellStep")](*mdescs)
    assert [o.shape_expr for o in outs] == [q.shape_expr] + [d.shape_expr for d in mdescs[6:]]
    name, ptx, lp, args = reg[("aot_impl", "lram::MLSTMCellStep")](*mdescs, outs, 0)
    assert name == "lram_mlstm_step_f32" and ptx == (out / "mlstm_step.sm_87.ptx").read_text()
    assert kb.entry_params(ptx)[0] == name and len(kb.entry_params(ptx)[1]) == 9 + len(args) + 4
    assert lp.grid_x == 256 // sk.MLSTM_BV and lp.grid_y.v == ("mul", "batch", 4)
    assert lp.block_x == 32 * sk.MLSTM_WARPS and lp.shared_mem == res["mlstm_step.sm_87"]["shared"]
    assert args[0] is B and args[1:] == (3, 4, 256)

    H = 512
    sdescs = [_Desc([B, 3, 4 * H]), _Desc([B, 3])] + [_Desc([B, H]) for _ in range(4)] + [_Desc([4, 512, 128]), _Desc([4 * H])]
    outs = reg[("register", "lram::SLSTMCellStep")](*sdescs)
    assert outs[0].shape_expr == [B, 3, H]
    name, ptx, lp, args = reg[("aot_impl", "lram::SLSTMCellStep")](*sdescs, outs, 0)
    assert name == "lram_slstm_step_f32" and len(kb.entry_params(ptx)[1]) == 8 + len(args) + 5
    assert lp.grid_x == 4 and lp.grid_y.v == ("floordiv", ("add", "batch", sk.SLSTM_BB - 1), sk.SLSTM_BB)
    assert lp.block_x == 32 * sk.SLSTM_WARPS and lp.shared_mem == res["slstm_step.sm_87"]["shared"]
    assert args[2:] == (4, 128)

    art = dict(num_warps=4, shared=0)
    with pytest.raises(tp.PluginError, match="static"):
        tp.mlstm_launch((B, 3, 4, _Sym("dyn")), art)
    with pytest.raises(tp.PluginError, match="1 to 4 tokens"):
        tp.mlstm_launch((1, 5, 4, 64), art)


def test_plugin_constants_mirror_the_kernels():
    assert (tp.T_MAX, tp.MLSTM_BV, tp.SLSTM_BB) == (sk.T_MAX, sk.MLSTM_BV, sk.SLSTM_BB)
    for op, spec in tp.OPS.items():
        fn, ins, outs, _, _ = sk.KERNELS[spec["kernel"]]
        assert fn.__name__ == spec["entry"] and (len(ins), len(outs)) == (spec["n_in"], spec["n_out"])


def test_no_compiler_names_the_prebuilt_route(monkeypatch):
    monkeypatch.delenv("LRAM_KERNEL_DIR", raising=False)  # this process interprets: Triton cannot compile here
    with pytest.raises(tp.PluginError, match="--kernel-dir DIR"):
        tp.kernel_artifact("slstm_step")


def test_missing_prebuilt_kernel_dir_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LRAM_KERNEL_DIR", str(tmp_path))
    with pytest.raises(tp.PluginError, match="python -m lram.kernels.build"):
        tp.kernel_artifact("mlstm_step")
