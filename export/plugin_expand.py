"""Make a plugin-flavour graph runnable without TensorRT, and list its plugin nodes.

``expand_plugin_nodes(model)`` adds ONNX model-local functions (FunctionProto, domain "lram") that implement
``MLSTMCellStep`` / ``SLSTMCellStep`` with standard ONNX ops; ONNX Runtime inlines them, TensorRT's parser
never sees them (it is handed the unexpanded graph). Semantics are the kernels' (kernels/step_kernels.py,
kernels/reference.py): valid[b, t] == 0 skips token t and passes the state through unchanged; any T, any B.

* mLSTM: the chunkwise-parallel form of export/cells.py's ``mlstm_chunk`` (same stabiliser
  m_t = max(log f_t + m_{t-1}, i_t), same operation order), with the running max over the chunk as a masked
  ReduceMax so T need not be known; invalid tokens get i = -1e30 and log f = 0.
* sLSTM: a Scan over T of ``cells.slstm_pointwise`` with the recurrent matmul; R and bias ride along as
  pass-through scan state (a Scan body inside a function then needs no outer-scope names).
* logsigmoid(x) = -Softplus(-x), exact; never Log(Sigmoid(x)) (ONNX Runtime's Sigmoid underflows to 0 below
  about -18 and the log gives -inf).

``plugin_nodes(model)`` lists the lram nodes with their plugin versions and refuses versions (or ops) this
package does not implement, with the same error type as kernels/trt_plugins.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import FunctionProto, ModelProto, NodeProto, TensorProto, helper

from lram.kernels.trt_plugins import OPS, PluginError, check_plugin_version

DOMAIN = "lram"
DOMAIN_VERSION = 1
NEG = -1e30  # cells.NEG: "minus infinity" that keeps max/exp free of inf - inf
EPS = 1e-6  # cells.mlstm_chunk / the kernel's denominator epsilon
_PLUGIN_ATTRS = ("plugin_namespace", "plugin_version", "aot")  # carried by the nodes, unused by the functions

__all__ = ["PluginNode", "plugin_nodes", "expand_plugin_nodes", "mlstm_function", "slstm_function", "PluginError"]


@dataclass(frozen=True)
class PluginNode:
    name: str
    op_type: str
    version: str
    node: NodeProto = field(repr=False, compare=False)


def _default_opset(model: ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise PluginError("the model imports no standard ONNX opset")


def plugin_nodes(model: ModelProto) -> list[PluginNode]:
    """The lram cell nodes of the main graph with their plugin versions.

    PluginError for a node in domain "lram" that is not a known cell op, for a plugin_namespace other than
    "lram", for an unknown plugin_version, and for a wrong number of inputs or outputs."""
    found = []
    for node in model.graph.node:
        if node.domain != DOMAIN and node.op_type not in OPS:
            continue
        if node.op_type not in OPS:
            raise PluginError(f"node {node.name!r}: unknown lram op {node.op_type!r} (known: {', '.join(sorted(OPS))})")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ns = attrs.get("plugin_namespace", node.domain or "")
        ns = ns.decode() if isinstance(ns, bytes) else str(ns)
        if ns != DOMAIN or node.domain != DOMAIN:
            raise PluginError(f"node {node.name!r} ({node.op_type}) has domain {node.domain!r} and plugin_namespace "
                              f"{ns!r}, expected {DOMAIN!r} for both")
        version = check_plugin_version(attrs.get("plugin_version"), node.op_type)
        spec = OPS[node.op_type]
        if len(node.input) != spec["n_in"] or len(node.output) != spec["n_out"]:
            raise PluginError(f"node {node.name!r} ({node.op_type}) has {len(node.input)} inputs / {len(node.output)} "
                              f"outputs, expected {spec['n_in']} / {spec['n_out']}")
        found.append(PluginNode(node.name, node.op_type, version, node))
    return found


class _Builder:
    """Collects nodes with generated names; enough of an op builder for the two function bodies."""

    def __init__(self, opset: int, prefix: str):
        self.opset, self.prefix, self.nodes, self._n = opset, prefix, [], 0

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}_{hint}_{self._n}"

    def op(self, op_type: str, *inputs: str, n_out: int = 1, **attrs):
        outs = [self._name(op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self._name("n_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=TensorProto.FLOAT, dims=None):
        vals = value if isinstance(value, (list, tuple)) else [value]
        dims = [len(vals)] if dims is None and isinstance(value, (list, tuple)) else (dims or [])
        return self.op("Constant", value=helper.make_tensor(self._name("c"), dtype, dims, vals))

    def ints(self, *values):
        return self.const(list(values), TensorProto.INT64)

    def unsqueeze(self, x, *axes):
        return self.op("Unsqueeze", x, self.ints(*axes))

    def squeeze(self, x, *axes):
        return self.op("Squeeze", x, self.ints(*axes))

    def reduce(self, kind: str, x, axes, keepdims: int):
        if kind == "ReduceSum" or self.opset >= 18:  # ReduceSum takes axes as an input since 13, ReduceMax since 18
            return self.op(kind, x, self.ints(*axes), keepdims=keepdims)
        return self.op(kind, x, axes=list(axes), keepdims=keepdims)

    def logsigmoid(self, x):
        return self.op("Neg", self.op("Softplus", self.op("Neg", x)))

    def identity(self, x, out: str):
        self.nodes.append(helper.make_node("Identity", [x], [out], name=self._name("n_out")))


def _function(name: str, inputs, outputs, b: _Builder) -> FunctionProto:
    return helper.make_function(
        DOMAIN, name, list(inputs), list(outputs), b.nodes,
        opset_imports=[helper.make_opsetid("", b.opset)], attributes=list(_PLUGIN_ATTRS),
        doc_string=f"{name} (lram plugin version 1) in standard ONNX ops; see export/plugin_expand.py")


def mlstm_function(opset: int) -> FunctionProto:
    """lram.MLSTMCellStep(q, k, v, igate, fgate, valid, C, n, m) -> (h, C', n', m') in standard ops."""
    x = _Builder(opset, "mlstm")
    perm = dict(perm=[0, 2, 1, 3])
    q = x.op("Transpose", "q", **perm)  # [B, NH, T, DH]
    v = x.op("Transpose", "v", **perm)
    dh = x.op("Cast", x.op("Gather", x.op("Shape", "q"), x.ints(3), axis=0), to=TensorProto.FLOAT)  # [1]
    k = x.op("Div", x.op("Transpose", "k", **perm), x.op("Sqrt", dh))
    # invalid tokens: i = NEG, log f = 0 (the state passes through them unchanged)
    ok = x.unsqueeze(x.op("Not", x.op("Equal", "valid", x.const(0.0))), 1)  # [B, 1, T]
    ig = x.op("Where", ok, x.op("Transpose", "igate", perm=[0, 2, 1]), x.const(NEG))  # [B, NH, T]
    lf = x.op("Where", ok, x.op("Transpose", x.logsigmoid("fgate"), perm=[0, 2, 1]), x.const(0.0))
    a = x.op("CumSum", lf, x.const(2, TensorProto.INT64))  # cumulative log forget [B, NH, T]
    m0 = x.squeeze("m", 3)  # [B, NH, 1]
    src = x.op("Sub", ig, a)  # i_j - a_j
    # causal [T, T]: j <= t
    T = x.op("Gather", x.op("Shape", "igate"), x.ints(1), axis=0)
    tt = x.op("Concat", T, T, axis=0)
    ones = x.op("ConstantOfShape", tt, value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))
    causal = x.op("Cast", x.op("Trilu", ones, upper=0), to=TensorProto.BOOL)
    # running max_{j<=t} src_j, then m_t = max(a_t + m0, a_t + run_t)
    run = x.reduce("ReduceMax", x.op("Where", causal, x.unsqueeze(src, 2), x.const(NEG)), [3], keepdims=0)
    mt = x.op("Max", x.op("Add", a, m0), x.op("Add", a, run))  # [B, NH, T]
    # intra-chunk weights D[t, j] = exp(a_t - a_j + i_j - m_t), j <= t
    logD = x.op("Sub", x.op("Add", x.unsqueeze(a, 3), x.unsqueeze(src, 2)), x.unsqueeze(mt, 3))
    D = x.op("Exp", x.op("Where", causal, logD, x.const(NEG)))
    decay0 = x.unsqueeze(x.op("Exp", x.op("Sub", x.op("Add", a, m0), mt)), 3)  # [B, NH, T, 1]
    S = x.op("Mul", x.op("MatMul", q, x.op("Transpose", k, perm=[0, 1, 3, 2])), D)
    num = x.op("Add", x.op("Mul", decay0, x.op("MatMul", q, "C")), x.op("MatMul", S, v))
    qn = x.op("Add", x.op("Mul", decay0, x.op("MatMul", q, "n")), x.reduce("ReduceSum", S, [3], keepdims=1))
    denom = x.op("Add", x.op("Max", x.op("Abs", qn), x.unsqueeze(x.op("Exp", x.op("Neg", mt)), 3)), x.const(EPS))
    x.identity(x.op("Transpose", x.op("Div", num, denom), **perm), "h")  # -> [B, T, NH, DH]
    # state after the chunk
    last = dict(starts=x.ints(-1), ends=x.ints(2**62), axes=x.ints(2))
    mT = x.op("Slice", mt, last["starts"], last["ends"], last["axes"])  # [B, NH, 1]
    aT = x.op("Slice", a, last["starts"], last["ends"], last["axes"])
    wT = x.unsqueeze(x.op("Exp", x.op("Sub", x.op("Add", aT, src), mT)), 3)  # [B, NH, T, 1]
    fT = x.unsqueeze(x.op("Exp", x.op("Sub", x.op("Add", aT, m0), mT)), 3)  # [B, NH, 1, 1]
    kw = x.op("Mul", k, wT)
    x.identity(x.op("Add", x.op("Mul", fT, "C"), x.op("MatMul", x.op("Transpose", kw, perm=[0, 1, 3, 2]), v)), "C_out")
    x.identity(x.op("Add", x.op("Mul", fT, "n"), x.unsqueeze(x.reduce("ReduceSum", kw, [2], keepdims=0), 3)), "n_out")
    x.identity(x.unsqueeze(mT, 3), "m_out")
    return _function("MLSTMCellStep", ["q", "k", "v", "igate", "fgate", "valid", "C", "n", "m"],
                     ["h", "C_out", "n_out", "m_out"], x)


def _slstm_body(opset: int) -> onnx.GraphProto:
    """Scan body: state (h, c, n, m, Rt, bias), scan inputs (wx_t [B, 4H], valid_t [B]) -> state', y_t."""
    x = _Builder(opset, "slstm_t")
    shR = x.op("Shape", "Rt")  # [NH, DH, 4DH]
    NH, DH = x.op("Gather", shR, x.ints(0), axis=0), x.op("Gather", shR, x.ints(1), axis=0)
    hh = x.op("Reshape", "h", x.op("Concat", x.ints(-1), NH, DH, axis=0))
    hh = x.op("Transpose", hh, perm=[1, 0, 2])  # [NH, B, DH]
    ry = x.op("MatMul", hh, "Rt")  # [NH, B, 4DH]
    ry = x.op("Transpose", x.op("Reshape", ry, x.op("Concat", x.ints(0, 0, 4), DH, axis=0)), perm=[1, 2, 0, 3])
    ry = x.op("Reshape", ry, x.ints(0, -1))  # [B, 4H] in (gate, head, dh)
    raw = x.op("Reshape", x.op("Add", x.op("Add", "wx_t", ry), "bias"), x.ints(0, 4, -1))  # [B, 4, H]
    i_raw, f_raw, z_raw, o_raw = (x.op("Gather", raw, x.const(g, TensorProto.INT64), axis=1) for g in range(4))
    logfm = x.op("Add", "m", x.logsigmoid(f_raw))
    m_new = x.op("Where", x.op("Equal", "n", x.const(0.0)), i_raw, x.op("Max", i_raw, logfm))
    one = x.const(1.0)
    i_g = x.op("Min", x.op("Exp", x.op("Sub", i_raw, m_new)), one)
    f_g = x.op("Min", x.op("Exp", x.op("Sub", logfm, m_new)), one)
    c_new = x.op("Add", x.op("Mul", f_g, "c"), x.op("Mul", i_g, x.op("Tanh", z_raw)))
    n_new = x.op("Add", x.op("Mul", f_g, "n"), i_g)
    h_new = x.op("Div", x.op("Mul", x.op("Sigmoid", o_raw), c_new), n_new)
    ok = x.unsqueeze(x.op("Not", x.op("Equal", "valid_t", x.const(0.0))), 1)  # [B, 1]
    for new, old in ((h_new, "h"), (c_new, "c"), (n_new, "n"), (m_new, "m")):
        x.identity(x.op("Where", ok, new, old), old + "_o")
    x.identity("h_o", "y_t")
    x.identity("Rt", "Rt_o")
    x.identity("bias", "bias_o")
    rank = dict(h=2, c=2, n=2, m=2, Rt=3, bias=1, wx_t=2, valid_t=1, y_t=2)
    f = lambda name: helper.make_tensor_value_info(  # noqa: E731
        name, TensorProto.FLOAT, [None] * rank[name.removesuffix("_o")])
    return helper.make_graph(
        x.nodes, "slstm_token", [f(n) for n in ("h", "c", "n", "m", "Rt", "bias", "wx_t", "valid_t")],
        [f(n) for n in ("h_o", "c_o", "n_o", "m_o", "Rt_o", "bias_o", "y_t")])


def slstm_function(opset: int) -> FunctionProto:
    """lram.SLSTMCellStep(wx, valid, h, c, n, m, R, bias) -> (y, h', c', n', m') in standard ops."""
    b = _Builder(opset, "slstm")
    Rt = b.op("Transpose", "R", perm=[0, 2, 1])  # [NH, DH, 4DH]: h_k @ Rt_k gives head k's gates in (gate, dh)
    outs = b.op("Scan", "h", "c", "n", "m", Rt, "bias", "wx", "valid", n_out=7, body=_slstm_body(opset),
                num_scan_inputs=2, scan_input_axes=[1, 1], scan_output_axes=[1])
    for src, dst in zip(outs, ("h_out", "c_out", "n_out", "m_out", None, None, "y")):
        if dst:
            b.identity(src, dst)
    return _function("SLSTMCellStep", ["wx", "valid", "h", "c", "n", "m", "R", "bias"],
                     ["y", "h_out", "c_out", "n_out", "m_out"], b)


_FUNCTIONS = {"MLSTMCellStep": mlstm_function, "SLSTMCellStep": slstm_function}


def expand_plugin_nodes(model: ModelProto) -> ModelProto:
    """A copy of ``model`` with model-local functions for its lram cell nodes (ONNX Runtime inlines them).

    The nodes themselves are left as they are. PluginError for an unknown op or plugin version."""
    found = plugin_nodes(model)
    out = ModelProto()
    out.CopyFrom(model)
    if not found:
        return out
    opset = _default_opset(model)
    have = {(f.domain, f.name) for f in out.functions}
    for op_type in sorted({p.op_type for p in found}):
        if (DOMAIN, op_type) not in have:
            out.functions.append(_FUNCTIONS[op_type](opset))
    imports = {imp.domain: imp for imp in out.opset_import}
    if DOMAIN not in imports:
        out.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    elif imports[DOMAIN].version != DOMAIN_VERSION:
        raise PluginError(f"the model imports domain {DOMAIN!r} version {imports[DOMAIN].version}, "
                          f"this lram-deploy implements version {DOMAIN_VERSION}")
    if out.ir_version < 8:  # model-local functions need IR 8
        out.ir_version = 8
    return out
