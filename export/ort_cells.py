"""The ``ort`` flavour's mLSTM cell: the matrix memory update as ONNX Runtime's fused ``com.microsoft::LinearAttention``.

With ``update_rule="gated"`` that contrib operator (ONNX Runtime >= 1.30 CPU) runs, token by token,
S_t = exp(g_t) S_{t-1} + k_t v_t^T and o_t = scale q_t^T S_t in one kernel: q, k, v [B, T, H*D], state
[B, H, Dk, Dv], g [B, T, H] (one decay per head, log space), outputs (o [B, T, H*Dv], present state). One
pass over the state per chunk instead of the several a Mul + MatMul + Add chain makes.

The stabilised mLSTM maps onto it exactly (the cell of ``cells.mlstm_cell``, same state tensors):
with a_t the cumulative log forget gate over the chunk and u_t = m_t - a_t = max(m_0, max_{j<=t} (i_j - a_j)),
    decay   g_t = log f_t + m_{t-1} - m_t = u_{t-1} - u_t   (u_{-1} = m_0; always <= 0)
    key     k_t exp(i_t - m_t) / sqrt(DH) = k_t exp(i_t - a_t - u_t) / sqrt(DH)
and the normaliser n is a second LinearAttention with the same decay, the unscaled key and the per-head
input gate exp(i_t - m_t) as its one-wide value: its output is q_t^T n_t. The stabiliser m is a few small ops
on [B, T, NH]. Episode starts (valid0 = 0: token 0 is the skipped reward token and the state is due for a
reset) put NEG into token 0's decay and input gate, so C and n are zeroed inside the kernel, never rewritten.

Checked against NumPy on ONNX Runtime 1.32 (4 heads, 256 x 256 and 256 x 1, T = 1 and 3, a decay of -1e30 at
token 0): relative error ~5e-7, the input state is not modified. The ai.onnx LinearAttention-27 schema is a
different operator (expanded into slow standard ops in 1.32, refused by 1.30): the exporter emits the
contrib one.
"""
from __future__ import annotations

import math

import torch

from .cells import NEG, logsigmoid, token_masks
from .plugin_cells import _untraced

DOMAIN = "com.microsoft"
MIN_ONNXRUNTIME = "1.30"  # the first release with the com.microsoft LinearAttention CPU kernel


def gated_linear_attention(q, k, v, S, g):
    """What the operator computes (scale 1): q, k [B, T, H*Dk], v [B, T, H*Dv], S [B, H, Dk, Dv], g [B, T, H]."""
    B_T_H = g.shape
    T, H = int(B_T_H[1]), int(B_T_H[2])
    Dk, Dv = int(S.shape[2]), int(S.shape[3])
    q, k, v = q.unflatten(-1, (H, Dk)), k.unflatten(-1, (H, Dk)), v.unflatten(-1, (H, Dv))
    outs = []
    for t in range(T):
        S = torch.exp(g[:, t])[..., None, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S).flatten(1))
    return torch.stack(outs, dim=1), S


class _LinearAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, S, g):
        with _untraced():
            return gated_linear_attention(q, k, v, S, g)

    @staticmethod
    def symbolic(g_, q, k, v, S, g):
        H = S.type().varyingSizes()[1]
        out, state = g_.op(f"{DOMAIN}::LinearAttention", q, k, v, S, g, outputs=2, q_num_heads_i=H,
                           kv_num_heads_i=H, update_rule_s="gated", scale_f=1.0)
        sizes = v.type().varyingSizes()
        out.setType(v.type().with_sizes([None, *sizes[1:]]))
        state.setType(S.type().with_sizes([None, *S.type().varyingSizes()[1:]]))
        return out, state


def mlstm_cell_ort(q, k, v, i_raw, f_raw, valid0, C, n, m, NH: int, DH: int):
    """``cells.mlstm_cell`` (same arguments, same results) with C and n updated by LinearAttention nodes."""
    T = int(i_raw.shape[1])  # static: the chunk length is fixed when the graph is built
    tok, neg = token_masks(valid0, T)  # [B, T, 1]
    a = torch.cumsum(logsigmoid(f_raw) * tok, dim=1)  # [B, T, NH]; a skipped token forgets nothing
    src = i_raw + neg - a  # i_j - a_j
    m0 = m.reshape(-1, 1, NH) * valid0.reshape(-1, 1, 1)
    upper = torch.triu(torch.full((T, T), NEG), diagonal=1).unsqueeze(-1)  # [t, j, 1]: NEG where j > t
    u = torch.maximum((src.unsqueeze(1) + upper).amax(dim=2), m0)  # m_t - a_t, [B, T, NH]
    decay = torch.cat([m0, u[:, : T - 1]], dim=1) - u + neg  # an episode start zeroes C and n at token 0
    gate = torch.exp(src - u)  # exp(i_t - m_t)
    k = k * (1.0 / math.sqrt(DH))
    k_gated = (k.reshape(-1, T, NH, DH) * gate.unsqueeze(-1)).reshape(-1, T, NH * DH)  # -1: no Shape nodes
    h, C = _LinearAttention.apply(q, k_gated, v, C, decay)  # [B, T, NH*DH]
    qn, n = _LinearAttention.apply(q, k, gate, n, decay)  # [B, T, NH]: q_t^T n_t
    mt = a + u
    h = h.reshape(-1, T, NH, DH) / (torch.maximum(qn.abs(), torch.exp(-mt)) + 1e-6).unsqueeze(-1)
    return h, (C, n, mt[:, T - 1 :].reshape(-1, NH, 1, 1))


mlstm_cell_ort.folds_reset = ("C", "n")  # token 0's decay of NEG at an episode start zeroes them inside the kernel
