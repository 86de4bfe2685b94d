"""The native flavour's nodes, run by compiled code (runtime/xlstm_native.c): one ``lram.native::MLSTMLayer`` per
mLSTM layer core, one ``lram.native::SLSTMCell`` per sLSTM recurrence.

``mlstm_core_native`` has the signature and results of ``cells.mlstm_layer_core`` and, in PyTorch, computes
exactly that (it calls it). Exported (TorchScript exporter, like the plugin flavour), it is one node

    MLSTMLayer(x_in [B,T,2I], valid0 [B], C, n, m, conv,
               conv_w, conv_b, w_qk, wv, w_if, b_if, outnorm_w, skip) -> h [B,T,I], C', n', m', conv'

with the core's semantics, episode-reset fold included (valid0 = 0: the carried-in C, n, m count as zero),
so the graph never passes the matrix memory through ONNX Runtime, and the ~100 small ONNX nodes of the
conv, the headwise projections, the gates, the cell and the head norm become one call. The weights are the
node's inputs (initializers), in the layouts MLSTMBlockStep holds them. runtime/backend_native.py runs the
ONNX segments between these nodes on ONNX Runtime and the nodes with runtime/xlstm_native.c.
"""
from __future__ import annotations

import torch

from lram.runtime.native_xlstm import DOMAIN, MLSTM_OP, SLSTM_OP

from .cells import mlstm_layer_core, slstm_cell
from .plugin_cells import _set_types, _untraced


class _MLSTMLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_in, valid0, C, n, m, conv, *weights):
        NH, DH = int(C.shape[1]), int(C.shape[2])
        with _untraced():
            h, state = mlstm_layer_core(x_in, valid0, C, n, m, conv, *weights, int(x_in.shape[1]), NH, DH)
        return (h, *state)

    @staticmethod
    def symbolic(g, x_in, valid0, C, n, m, conv, *weights):
        outs = g.op(f"{DOMAIN}::{MLSTM_OP}", x_in, valid0, C, n, m, conv, *weights, outputs=5)
        sizes = x_in.type().varyingSizes()
        half = sizes[-1] // 2 if sizes and sizes[-1] is not None else None
        _set_types(outs, [(x_in, half), (C, None), (n, None), (m, None), (conv, None)])
        return outs


def mlstm_core_native(x_in, valid0, C, n, m, conv, conv_w, conv_b, w_qk, wv, w_if, b_if, outnorm_w, skip,
                      T: int, NH: int, DH: int):
    """``cells.mlstm_layer_core`` as one lram.native::MLSTMLayer node. Returns h [B, T, I], (C, n, m, conv)."""
    h, C, n, m, conv = _MLSTMLayer.apply(x_in, valid0, C, n, m, conv, conv_w, conv_b, w_qk, wv, w_if, b_if,
                                         outnorm_w, skip)
    return h, (C, n, m, conv)


mlstm_core_native.folds_reset = ("C", "n")  # as mlstm_cell: the carried-in state is weighted by keep, never rewritten


class _SLSTMCell(torch.autograd.Function):
    @staticmethod
    def forward(ctx, wx, valid0, h, c, n, m, Rt, bias):
        NH, DH = int(Rt.shape[0]), int(Rt.shape[1])
        with _untraced():
            y, state = slstm_cell(wx, valid0, h, c, n, m, Rt.transpose(1, 2), bias, NH, DH)
        return (y, *state)

    @staticmethod
    def symbolic(g, wx, valid0, h, c, n, m, Rt, bias):
        outs = g.op(f"{DOMAIN}::{SLSTM_OP}", wx, valid0, h, c, n, m, Rt, bias, outputs=5)
        sizes = wx.type().varyingSizes()
        H = sizes[-1] // 4 if sizes and sizes[-1] is not None else None
        _set_types(outs, [(wx, H), (h, None), (c, None), (n, None), (m, None)])
        return outs


def slstm_cell_native(wx, valid0, h, c, n, m, R, bias, NH: int, DH: int):
    """``cells.slstm_cell`` as one lram.native::SLSTMCell node:

        SLSTMCell(wx [B,T,4H], valid0 [B], h, c, n, m [B,H], Rt [NH,DH,4DH], bias [4H]) -> y [B,T,H], h', c', n', m'

    The recurrence and its pointwise gates for every token; the headwise input projections stay ONNX Runtime
    MatMuls (a batched GEMM is what it does best). Rt is the recurrent kernel transposed (the exporter folds the
    transpose into the initializer), so the compiled loop streams its rows. The state is zeroed at graph entry
    for an episode start (StepGraph), as for the standard cell; a skipped token 0 leaves it as it was."""
    if tuple(R.shape) != (NH, 4 * DH, DH):
        raise ValueError(f"sLSTM recurrent kernel must be [NH, 4*DH, DH] = {(NH, 4 * DH, DH)}, got {tuple(R.shape)}")
    y, h, c, n, m = _SLSTMCell.apply(wx, valid0, h, c, n, m, R.transpose(1, 2), bias)
    return y, (h, c, n, m)
