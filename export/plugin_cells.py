"""The plugin flavour's cell updates: one ``lram::MLSTMCellStep`` / ``lram::SLSTMCellStep`` ONNX node each.

``mlstm_cell_plugin`` / ``slstm_cell_plugin`` have the signatures and return values of
``cells.mlstm_cell`` / ``cells.slstm_cell``. In PyTorch they compute exactly what those compute (they call
them); exported with the legacy (TorchScript) exporter, each becomes a single node in domain "lram" whose
inputs and outputs follow the kernels' launch contract (kernels/step_kernels.py), matched by the TensorRT
AOT plugins of kernels/trt_plugins.py:

    MLSTMCellStep(q, k, v [B,T,NH,DH], igate, fgate [B,T,NH], valid [B,T], C, n, m) -> h [B,T,NH,DH], C', n', m'
    SLSTMCellStep(wx [B,T,4H], valid [B,T], h, c, n, m [B,H], R [NH,4DH,DH], bias [4H]) -> y [B,T,H], h', c', n', m'

Node attributes: plugin_namespace="lram", plugin_version="1", aot=1 and nothing else. NH and DH are NOT
attributes: TensorRT's Python-plugin creator rejects any field its ``register`` signature does not declare,
and both are static in the input shapes anyway.

Semantics of ``valid``: the kernel treats valid[b, t] == 0 as "skip this token, the state passes through".
The standard cells treat valid0 == 0 as "skip token 0 AND start from a zero state". The two agree because
StepGraph's plugin flavour zeroes all state of an episode start at graph entry, and only token 0 is ever
invalid (valid[:, 1:] == 1 by construction here). ``plugin_expand`` gives ONNX Runtime the kernel semantics.
"""
from __future__ import annotations

import contextlib

import torch

from .cells import mlstm_cell, slstm_cell

NAMESPACE = "lram"
PLUGIN_VERSION = "1"
_ATTRS = dict(plugin_namespace_s=NAMESPACE, plugin_version_s=PLUGIN_VERSION, aot_i=1)


def _valid(valid0: torch.Tensor, T: int) -> torch.Tensor:
    """[B, T] float: token 0 = valid0, the others 1 (no batch size baked in when traced)."""
    first = torch.arange(T) == 0  # a [T] constant (T is static)
    return torch.where(first, valid0[:, None], torch.ones((), dtype=valid0.dtype))


def _set_types(outs, likes) -> None:
    """Output types for the exporter's shape inference: dtype and the static dims; the batch stays dynamic."""
    for out, (like, last) in zip(outs, likes):
        sizes = like.type().varyingSizes()
        if sizes is None:
            out.setType(like.type())
            continue
        sizes = [None, *sizes[1:]]
        if last is not None:
            sizes[-1] = last
        out.setType(like.type().with_sizes(sizes))


@contextlib.contextmanager
def _untraced():
    """Run a plugin op's forward outside the TorchScript tracer: the traced graph gets only the one node.

    Traced (torch 2.13, legacy exporter), the second of two MLSTMCellStep ops in one graph (tiny-mlstm) failed
    in apply() with 'unordered_map::at'; the inner ops are not wanted in the trace anyway."""
    state = torch._C._get_tracing_state()
    if state is None:
        yield
        return
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


class _MLSTMCellStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, igate, fgate, valid, C, n, m):
        NH, DH = int(q.shape[2]), int(q.shape[3])
        with _untraced():
            h, (C, n, m) = mlstm_cell(q.flatten(2), k.flatten(2), v.flatten(2), igate, fgate, valid[:, 0],
                                      C, n, m, NH, DH)
        return h, C, n, m

    @staticmethod
    def symbolic(g, q, k, v, igate, fgate, valid, C, n, m):
        outs = g.op(f"{NAMESPACE}::MLSTMCellStep", q, k, v, igate, fgate, valid, C, n, m, outputs=4, **_ATTRS)
        _set_types(outs, [(q, None), (C, None), (n, None), (m, None)])
        return outs


class _SLSTMCellStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, wx, valid, h, c, n, m, R, bias):
        NH, DH = int(R.shape[0]), int(R.shape[2])
        with _untraced():
            y, (h, c, n, m) = slstm_cell(wx, valid[:, 0], h, c, n, m, R, bias, NH, DH)
        return y, h, c, n, m

    @staticmethod
    def symbolic(g, wx, valid, h, c, n, m, R, bias):
        outs = g.op(f"{NAMESPACE}::SLSTMCellStep", wx, valid, h, c, n, m, R, bias, outputs=5, **_ATTRS)
        sizes = wx.type().varyingSizes()
        H = sizes[-1] // 4 if sizes and sizes[-1] is not None else None
        _set_types(outs, [(wx, H), (h, None), (c, None), (n, None), (m, None)])
        return outs


def mlstm_cell_plugin(q, k, v, i_raw, f_raw, valid0, C, n, m, NH, DH):
    """``cells.mlstm_cell`` as one lram::MLSTMCellStep node. Returns h [B, T, NH, DH], (C, n, m)."""
    T = int(q.shape[1])
    q, k, v = (x.unflatten(-1, (NH, DH)) for x in (q, k, v))
    h, C, n, m = _MLSTMCellStep.apply(q, k, v, i_raw, f_raw, _valid(valid0, T), C, n, m)
    return h, (C, n, m)


def slstm_cell_plugin(wx, valid0, h, c, n, m, R, bias, NH, DH):
    """``cells.slstm_cell`` as one lram::SLSTMCellStep node. Returns y [B, T, H], (h, c, n, m)."""
    if tuple(R.shape) != (NH, 4 * DH, DH):
        raise ValueError(f"sLSTM recurrent kernel must be [NH, 4*DH, DH] = {(NH, 4 * DH, DH)}, got {tuple(R.shape)}")
    y, h, c, n, m = _SLSTMCellStep.apply(wx, _valid(valid0, int(wx.shape[1])), h, c, n, m, R, bias)
    return y, (h, c, n, m)
