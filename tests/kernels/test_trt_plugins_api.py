"""The plugin definitions against the REAL tensorrt.plugin package.

NVIDIA's tensorrt-cu13-bindings wheel (PyPI, 1.3 MB, no GPU needed to install) ships tensorrt.plugin as
plain Python next to the compiled bindings, which need libnvinfer and cannot load here. So the real plugin
package is imported on top of a stand-in for the compiled `tensorrt` module (placeholder classes and enums,
and an expression builder that evaluates dimension arithmetic the way TensorRT's C++ side does). What runs
for real: @register / @autotune / @aot_impl with their signature validation, TensorDesc, ShapeExpr(s),
SymInt32 / SymIntExprs, KernelLaunchParams, AutoTuneCombination, and the checks TensorRT's AOT plugin
class (_TemplateAOTPlugin.get_launch_params) applies to what aot_impl returns. What stays unverified
without TensorRT: the ONNX parser's mapping of our nodes to the plugins, the engine build, that TensorRT
launches the PTX with (inputs, extra args, outputs), and everything on a GPU."""
import importlib.util
import json
import operator
import sys
import types
from pathlib import Path
from typing import Tuple

import pytest

from lram.kernels import build as kb
from lram.kernels import trt_plugins as tp

SPEC = importlib.util.find_spec("tensorrt_bindings")
pytestmark = pytest.mark.skipif(SPEC is None, reason="pip install tensorrt-cu13-bindings (the real tensorrt.plugin)")


# ---- the stand-in for the compiled module -------------------------------------------------------------
class _Meta(type):
    def __getattr__(cls, name):  # enum members: distinct, hashable placeholders
        if name.startswith("__"):
            raise AttributeError(name)
        setattr(cls, name, f"{cls.__name__}.{name}")
        return getattr(cls, name)


class _Obj(metaclass=_Meta):
    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *a, **k: None


class IDimensionExpr(_Obj):
    """An int, or a symbol / (op, a, b) tuple."""

    def __init__(self, v):
        self.v = v

    def is_constant(self):
        return isinstance(self.v, int)

    def get_constant_value(self):
        return self.v


_OPS = {"SUM": operator.add, "SUB": operator.sub, "PROD": operator.mul, "FLOOR_DIV": operator.floordiv,
        "CEIL_DIV": lambda a, b: -(-a // b), "MAX": max, "MIN": min}


class ExprBuilder:
    def constant(self, v):
        return IDimensionExpr(int(v))

    def operation(self, op, a, b):
        name = op.split(".")[-1]
        if a.is_constant() and b.is_constant():
            return IDimensionExpr(_OPS[name](a.v, b.v))
        return IDimensionExpr((name, a.v, b.v))


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        setattr(self, name, _Meta(name, (_Obj,), {}))
        return getattr(self, name)


@pytest.fixture
def trtp(monkeypatch):
    trt = _Module("tensorrt")
    trt.__path__, trt.__version__ = [], "stand-in"
    trt.IDimensionExpr = IDimensionExpr
    trt.float32 = "DataType.FLOAT"
    trt.Dims = types.SimpleNamespace(MAX_DIMS=8)
    registry = types.SimpleNamespace(register_creator=lambda c, ns: True, get_creator=lambda *a: object())
    trt.get_plugin_registry = lambda: registry
    pkg = Path(SPEC.submodule_search_locations[0]) / "plugin"
    spec = importlib.util.spec_from_file_location("tensorrt.plugin", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", mod)
    for name in [n for n in sys.modules if n.startswith("tensorrt.plugin.")]:
        monkeypatch.delitem(sys.modules, name)
    trt.plugin = mod
    spec.loader.exec_module(mod)
    yield mod
    for name in [n for n in sys.modules if n.startswith("tensorrt.plugin.")]:
        sys.modules.pop(name, None)


def _desc(trtp, *dims):
    shape = trtp.ShapeExprs.from_tuple([trtp.ShapeExpr(IDimensionExpr(d)) if isinstance(d, str) else d for d in dims])
    return trtp.TensorDesc(shape, "DataType.FLOAT")


def _check_aot_return(trtp, ret):
    """What TensorRT's _TemplateAOTPlugin.get_launch_params checks and evaluates; returns evaluated values."""
    name, ptx, lp, extra = ret
    assert isinstance(name, (str, bytes)) and isinstance(ptx, (str, bytes))
    assert isinstance(lp, trtp.KernelLaunchParams) and isinstance(extra, trtp.SymExprs)
    assert all(isinstance(a, trtp.SymInt32) for a in extra)
    fields = ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "shared_mem")
    dims = {f: getattr(lp, f)().expr.v for f in fields}
    return name, ptx, dims, [a().expr.v for a in extra]


def test_definitions_with_the_real_plugin_api(trtp, aot_dir, monkeypatch):
    out, r = aot_dir
    assert r.returncode == 0, r.stderr[-2000:]
    monkeypatch.setenv("LRAM_KERNEL_DIR", str(out))
    res = json.loads((out / "resources.json").read_text())["kernels"]
    fns = tp._define(trtp)  # the real decorators validate every signature here
    reg = trtp._lib.QDP_REGISTRY
    assert {"lram::MLSTMCellStep", "lram::SLSTMCellStep"} <= set(reg)
    assert reg["lram::MLSTMCellStep"].num_outputs == 4 and reg["lram::SLSTMCellStep"].num_outputs == 5
    assert reg["lram::MLSTMCellStep"].aot_impl_func is fns["mlstm_aot"]

    trtp._tensor.SymIntExpr._exprBuilder = ExprBuilder()  # what TensorRT sets while it asks for launch params
    try:
        B = "batch"
        m = [_desc(trtp, B, 3, 4, 256)] * 3 + [_desc(trtp, B, 3, 4)] * 2 + [_desc(trtp, B, 3)]
        m += [_desc(trtp, B, 4, 256, 256), _desc(trtp, B, 4, 256, 1), _desc(trtp, B, 4, 1, 1)]
        outs = fns["mlstm_desc"](*m)
        assert len(outs) == 4 and all(isinstance(o, trtp.TensorDesc) for o in outs)
        name, ptx, dims, extra = _check_aot_return(trtp, fns["mlstm_aot"](*m, outs, 0))
        assert name == "lram_mlstm_step_f32" and kb.entry_params(ptx)[0] == name
        assert dims == dict(grid_x=256 // tp.MLSTM_BV, grid_y=("PROD", "batch", 4), grid_z=1, block_x=128, block_y=1,
                            block_z=1, shared_mem=res["mlstm_step.sm_87"]["shared"])
        assert extra == ["batch", 3, 4, 256]

        H = 512
        s = [_desc(trtp, B, 3, 4 * H), _desc(trtp, B, 3)] + [_desc(trtp, B, H)] * 4 + [_desc(trtp, 4, 512, 128),
                                                                                       _desc(trtp, 4 * H)]
        outs = fns["slstm_desc"](*s)
        assert len(outs) == 5 and outs[0].shape_expr[2].constant_value() == H
        name, ptx, dims, extra = _check_aot_return(trtp, fns["slstm_aot"](*s, outs, 0))
        assert name == "lram_slstm_step_f32"
        assert dims["grid_x"] == 4 and dims["grid_y"] == ("FLOOR_DIV", ("SUM", "batch", tp.SLSTM_BB - 1), tp.SLSTM_BB)
        assert extra == ["batch", 3, 4, 128]
        combos = fns["mlstm_autotune"](*m, outs[:4])
        assert len(combos) == 1 and isinstance(combos[0], trtp.AutoTuneCombination)
    finally:
        trtp._tensor.SymIntExpr._exprBuilder = None


def test_the_real_validation_catches_a_bad_signature(trtp):
    """The check is live: an aot_impl whose inputs do not match the registered ones is refused."""
    TD = trtp.TensorDesc

    @trtp.register("lramtest::Bad")
    def desc(x: TD, y: TD) -> Tuple[TD]:
        return (x.like(),)

    with pytest.raises(ValueError, match="does not match the expected input arg schema"):
        @trtp.aot_impl("lramtest::Bad")
        def aot(y: TD, x: TD, outputs: Tuple[TD], tactic: int):
            pass
