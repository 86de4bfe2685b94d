"""TensorRT quickly-deployable (Python) plugins for the fused cells, AOT flavour (TensorRT >= 10.9).

    lram::MLSTMCellStep  (ONNX op_type "MLSTMCellStep", plugin_namespace "lram", plugin_version "1")
        inputs  q, k, v [B,T,NH,DH], igate, fgate [B,T,NH], valid [B,T], C [B,NH,DH,DH], n [B,NH,DH,1], m [B,NH,1,1]
        outputs h [B,T,NH,DH], C', n', m'
    lram::SLSTMCellStep  (op_type "SLSTMCellStep")
        inputs  wx [B,T,4H], valid [B,T], h, c, n, m [B,H], R [NH,4DH,DH], b [4H]
        outputs y [B,T,H], h', c', n', m'

All fp32, linear format. ``aot_impl`` returns the entry point name and PTX of the Triton kernels
(kernels/step_kernels.py, compiled ahead of time by kernels/build.py), the launch parameters (grid, Triton's
num_warps x 32 threads, Triton's dynamic shared memory) and the int32 scalars B, T, NH, DH as symbolic
expressions, so a built engine needs neither Python nor Triton at run time. TensorRT launches an AOT plugin
kernel with (input pointers..., extra int32 args..., output pointers...): exactly the kernels' signature
once build.py has removed the two scratch-pointer parameters Triton appends (unused by these kernels).

The PTX: ``$LRAM_KERNEL_DIR/<kernel>.sm_<arch>.ptx`` (+ resources.json) when shipped prebuilt by
``python -m lram.kernels.build --out DIR``, else compiled now with Triton. ``<arch>`` is $LRAM_PLUGIN_ARCH,
default 87: sm_87 PTX is JIT-compiled by the driver on Orin, Hopper and Thor alike.

The ONNX node must carry plugin_namespace="lram" and aot=1 (TensorRT's ONNX parser then takes the AOT
implementation). TensorRT is imported only by ``register()``; importing this module never needs it.
Batch B may be dynamic; T <= 4 tokens per launch.
"""
# No "from __future__ import annotations": tensorrt.plugin reads the real annotation objects.
import json
import os
from pathlib import Path
from typing import List, Tuple, Union

NAMESPACE = "lram"
PLUGIN_VERSION = "1"
SUPPORTED_VERSIONS = ("1",)
OPS = {
    "MLSTMCellStep": dict(kernel="mlstm_step", entry="lram_mlstm_step_f32", n_in=9, n_out=4),
    "SLSTMCellStep": dict(kernel="slstm_step", entry="lram_slstm_step_f32", n_in=8, n_out=5),
}
MIN_TRT = (10, 9)
T_MAX = 4  # = step_kernels.T_MAX (not imported: that would import triton)
MLSTM_BV, SLSTM_BB = 16, 4  # = step_kernels.MLSTM_BV, SLSTM_BB; tests/kernels/test_trt_plugins.py checks


class PluginError(RuntimeError):
    pass


def check_plugin_version(version, op_type: str = "") -> str:
    """The plugin version a node asks for; clear error for one this package does not implement."""
    v = "1" if version in (None, "", b"") else (version.decode() if isinstance(version, bytes) else str(version))
    if v not in SUPPORTED_VERSIONS:
        raise PluginError(
            f"lram plugin {op_type or '(cell)'} version {v!r} is not implemented by this lram-deploy "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)}). Re-export the graph with this version of lram-deploy "
            "or upgrade lram-deploy."
        )
    return v


def check_onnx_plugin_nodes(model) -> list:
    """Validate the lram cell nodes of an onnx.ModelProto (op_type, namespace, version); returns them."""
    from onnx import helper

    nodes = []
    for node in model.graph.node:
        if node.op_type not in OPS:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ns = attrs.get("plugin_namespace", node.domain or "")
        ns = ns.decode() if isinstance(ns, bytes) else ns
        if ns != NAMESPACE:
            raise PluginError(f"node {node.name!r} ({node.op_type}) has plugin_namespace {ns!r}, expected {NAMESPACE!r}")
        check_plugin_version(attrs.get("plugin_version"), node.op_type)
        spec = OPS[node.op_type]
        if len(node.input) != spec["n_in"] or len(node.output) != spec["n_out"]:
            raise PluginError(f"node {node.name!r} ({node.op_type}) has {len(node.input)} inputs / {len(node.output)} "
                              f"outputs, expected {spec['n_in']} / {spec['n_out']}")
        nodes.append(node)
    return nodes


def _const(expr, what: str) -> int:
    if isinstance(expr, int):
        return expr
    if getattr(expr, "is_constant", False):
        return int(expr.constant_value)
    raise PluginError(f"{what} must be a static dimension in the graph (only the batch may be dynamic)")


def kernel_artifact(kernel: str) -> dict:
    """{'entry', 'ptx', 'shared', 'num_warps'} of one step kernel for the plugin's target (see module doc)."""
    arch = os.environ.get("LRAM_PLUGIN_ARCH", "87").removeprefix("sm_").rstrip("a")
    d = os.environ.get("LRAM_KERNEL_DIR")
    if d:
        ptx_path, res_path = Path(d) / f"{kernel}.sm_{arch}.ptx", Path(d) / "resources.json"
        if not (ptx_path.exists() and res_path.exists()):
            raise PluginError(f"LRAM_KERNEL_DIR={d} lacks {ptx_path.name} or resources.json: build them with "
                              f"python -m lram.kernels.build --out {d} --arch {arch}")
        meta = json.loads(res_path.read_text())["kernels"].get(f"{kernel}.sm_{arch}")
        if meta is None:
            raise PluginError(f"{res_path} has no entry for {kernel}.sm_{arch}")
        return dict(entry=meta["entry"], ptx=ptx_path.read_text(), shared=meta["shared"], num_warps=meta["num_warps"])
    from . import build

    try:
        art = build.compile_kernel(kernel, arch)
    except build.BuildError as e:
        raise PluginError(f"cannot compile the {kernel} kernel for the plugin ({e}). Or build the PTX on any machine "
                          "with Triton, python -m lram.kernels.build --out DIR, and pass lram compile --kernel-dir DIR "
                          "(or set LRAM_KERNEL_DIR)") from None
    return dict(entry=art.entry, ptx=art.ptx, shared=art.shared, num_warps=art.num_warps)


def _const(expr):
    """The int value of a dimension, None when symbolic. tensorrt.plugin's ShapeExpr has the property
    is_constant and the METHOD constant_value()."""
    if isinstance(expr, int):
        return expr
    if getattr(expr, "is_constant", False):
        value = expr.constant_value
        return int(value() if callable(value) else value)
    return None


def _cdiv(a, b: int):
    c = _const(a)
    return -(-c // b) if c is not None else (a + (b - 1)) // b  # TensorRT's symbolic dims have + and //


def _tokens(T) -> None:
    t = _const(T)
    if t is not None and not 1 <= t <= T_MAX:
        raise PluginError(f"the lram step kernels take 1 to {T_MAX} tokens per launch, the graph has T = {t}")


def mlstm_launch(q_shape, art: dict) -> dict:
    """Launch geometry of lram_mlstm_step_f32 from q's shape (B may be symbolic): one program per 16 value
    columns of each (batch row, head)."""
    B, T, NH, DH = q_shape
    _tokens(T)
    if _const(NH) is None or _const(DH) is None:
        raise PluginError("the mLSTM head count and head dim must be static in the graph (only the batch is dynamic)")
    return dict(grid=(_cdiv(DH, MLSTM_BV), B * NH, 1), block=(32 * art["num_warps"], 1, 1), shared_mem=art["shared"],
                args=(B, T, NH, DH))


def slstm_launch(wx_shape, R_shape, art: dict) -> dict:
    """Launch geometry of lram_slstm_step_f32: one program per head and 4 batch rows."""
    B, T, _ = wx_shape
    NH, _, DH = R_shape
    _tokens(T)
    if _const(NH) is None or _const(DH) is None:
        raise PluginError("the sLSTM head count and head dim must be static in the graph (only the batch is dynamic)")
    return dict(grid=(NH, _cdiv(B, SLSTM_BB), 1), block=(32 * art["num_warps"], 1, 1), shared_mem=art["shared"],
                args=(B, T, NH, DH))


_registered = False


def _import_trt_plugin():
    try:
        import tensorrt as trt
    except ImportError:
        raise PluginError(
            "TensorRT is not installed: the lram plugins need TensorRT >= 10.9 (tensorrt.plugin with aot_impl). "
            "Install it from NVIDIA (JetPack, or pip with NVIDIA's index), or export the standard flavour "
            "(no plugins) and run it with ONNX Runtime."
        ) from None
    ver = tuple(int(x) for x in trt.__version__.split(".")[:2])
    if ver < MIN_TRT:
        raise PluginError(
            f"TensorRT {trt.__version__} has no AOT Python plugins (need >= {MIN_TRT[0]}.{MIN_TRT[1]}); "
            "JetPack 6 (TensorRT 10.3) must use the standard (plugin-free) graph flavour."
        )
    import tensorrt.plugin as trtp

    if not hasattr(trtp, "aot_impl"):
        raise PluginError(f"tensorrt.plugin of TensorRT {trt.__version__} lacks aot_impl (need >= 10.9)")
    return trt, trtp


def register(version: str = PLUGIN_VERSION) -> None:
    """Register lram::MLSTMCellStep and lram::SLSTMCellStep with TensorRT (idempotent)."""
    global _registered
    check_plugin_version(version)
    if _registered:
        return
    trt, trtp = _import_trt_plugin()
    _define(trtp)
    _registered = True


def _define(trtp):
    """Plugin definitions (separate from register() so tests can drive them with a stand-in trtp)."""
    TD = trtp.TensorDesc
    ATC = List[trtp.AutoTuneCombination]
    AOT = Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]
    fmt = lambda n: trtp.AutoTuneCombination(", ".join(["FP32"] * n), "LINEAR")

    def sym_args(args):
        return trtp.SymIntExprs.from_tuple([trtp.SymInt32(a) for a in args])

    def launch_params(geo):
        lp = trtp.KernelLaunchParams()
        lp.grid_x, lp.grid_y, lp.grid_z = geo["grid"]
        lp.block_x, lp.block_y, lp.block_z = geo["block"]
        lp.shared_mem = geo["shared_mem"]
        return lp

    # ---- mLSTM -----------------------------------------------------------------------------------
    @trtp.register(f"{NAMESPACE}::MLSTMCellStep")
    def mlstm_desc(q: TD, k: TD, v: TD, igate: TD, fgate: TD, valid: TD, C: TD, n: TD, m: TD) -> Tuple[TD, TD, TD, TD]:
        return q.like(), C.like(), n.like(), m.like()

    @trtp.autotune(f"{NAMESPACE}::MLSTMCellStep")
    def mlstm_autotune(q: TD, k: TD, v: TD, igate: TD, fgate: TD, valid: TD, C: TD, n: TD, m: TD, outputs: Tuple[TD]) -> ATC:
        return [fmt(9 + 4)]

    @trtp.aot_impl(f"{NAMESPACE}::MLSTMCellStep")
    def mlstm_aot(q: TD, k: TD, v: TD, igate: TD, fgate: TD, valid: TD, C: TD, n: TD, m: TD, outputs: Tuple[TD], tactic: int) -> AOT:
        art = kernel_artifact("mlstm_step")
        geo = mlstm_launch(tuple(q.shape_expr), art)
        return art["entry"], art["ptx"], launch_params(geo), sym_args(geo["args"])

    # ---- sLSTM -----------------------------------------------------------------------------------
    @trtp.register(f"{NAMESPACE}::SLSTMCellStep")
    def slstm_desc(wx: TD, valid: TD, h: TD, c: TD, n: TD, m: TD, R: TD, b: TD) -> Tuple[TD, TD, TD, TD, TD]:
        y = wx.like()
        y.shape_expr[2] = h.shape_expr[1]
        return y, h.like(), c.like(), n.like(), m.like()

    @trtp.autotune(f"{NAMESPACE}::SLSTMCellStep")
    def slstm_autotune(wx: TD, valid: TD, h: TD, c: TD, n: TD, m: TD, R: TD, b: TD, outputs: Tuple[TD]) -> ATC:
        return [fmt(8 + 5)]

    @trtp.aot_impl(f"{NAMESPACE}::SLSTMCellStep")
    def slstm_aot(wx: TD, valid: TD, h: TD, c: TD, n: TD, m: TD, R: TD, b: TD, outputs: Tuple[TD], tactic: int) -> AOT:
        art = kernel_artifact("slstm_step")
        geo = slstm_launch(tuple(wx.shape_expr), tuple(R.shape_expr), art)
        return art["entry"], art["ptx"], launch_params(geo), sym_args(geo["args"])

    return dict(mlstm_desc=mlstm_desc, mlstm_aot=mlstm_aot, slstm_desc=slstm_desc, slstm_aot=slstm_aot,
                mlstm_autotune=mlstm_autotune, slstm_autotune=slstm_autotune)
