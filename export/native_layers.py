"""The native flavour's mLSTM layer core: one ``lram.native::MLSTMLayer`` ONNX node, run by compiled code.

``mlstm_core_native`` has the signature and results of ``cells.mlstm_layer_core`` and, in PyTorch, computes
exactly that (it calls it). Exported (TorchScript exporter, like the plugin flavour), it is one node

    MLSTMLayer(x_in [B,T,2I], valid0 [B], C, n, m, conv,
               conv_w, conv_b, w_qk, wv, w_if, b_if, outnorm_w, skip) -> h [B,T,I], C', n', m', conv'

with the core's semantics, episode-reset fold included (valid0 = 0: the carried-in C, n, m count as zero),
so the graph never passes the matrix memory through ONNX Runtime, and the ~100 small ONNX nodes of the
conv, the headwise projections, the gates, the cell and the head norm become one call. The weights are the
node's inputs (initializers), in the layouts MLSTMBlockStep holds them. runtime/backend_native.py runs the
ONNX segments between these nodes on ONNX Runtime and the nodes with runtime/mlstm_native.c.
"""
from __future__ import annotations

import torch

from lram.runtime.native_mlstm import DOMAIN, OP

from .cells import mlstm_layer_core
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
        outs = g.op(f"{DOMAIN}::{OP}", x_in, valid0, C, n, m, conv, *weights, outputs=5)
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
