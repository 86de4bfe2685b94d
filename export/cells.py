"""Export-friendly step functions for one environment step (a chunk of T tokens) through each xLSTM block.

Functional: state in, state out, nothing mutated in place, no data-dependent Python branches, and an exact
logsigmoid (-softplus(-x); ONNX Runtime's Log(Sigmoid(x)) is -inf below about -18 and wipes the memory).
They read the weights of the trained xlstm modules and reproduce the package's math, checked against its own
parallel forward and step(). Token 0 of a chunk may be invalid (the reward token at an episode start): an
invalid token leaves the recurrent state unchanged.

The mLSTM cell runs the chunk in its parallel (chunkwise) form: the matrix memory C is read once for the
three readouts and once for the update, instead of three sequential read-modify-writes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NEG = -1e30  # "minus infinity" that keeps max/exp free of inf - inf
_NEG = torch.tensor(NEG)  # a scalar, so tracing never bakes a batch size into it


def logsigmoid(x: torch.Tensor) -> torch.Tensor:
    return -F.softplus(-x)


def norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The xlstm LayerNorm: no bias, scale (1 + weight)."""
    return F.layer_norm(x, (int(x.shape[-1]),), eps=eps) * (1.0 + weight)


def head_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MultiHeadLayerNorm: x [..., NH, DH] normalised per head, scale (1 + weight) over NH*DH."""
    y = F.layer_norm(x, (int(x.shape[-1]),), eps=eps)
    return y.flatten(-2) * (1.0 + weight)


def causal_conv(x: torch.Tensor, conv_state: torch.Tensor, valid0: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """Depthwise causal conv over a chunk. x [B, T, D]; conv_state [B, K, D] holds the last K inputs; w [K, D].

    An invalid token 0 enters as zeros: it is only ever invalid at an episode start, where the state is zero,
    so a zero input leaves exactly the windows a skipped token would."""
    T, K = x.shape[1], conv_state.shape[1]
    x = torch.cat([x[:, :1] * valid0[:, None, None], x[:, 1:]], dim=1)
    full = torch.cat([conv_state, x], dim=1)  # [B, K + T, D]
    y = torch.stack([(full[:, t + 1 : t + 1 + K] * w).sum(dim=1) for t in range(T)], dim=1) + b
    return y, full[:, T:]


def headwise(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """LinearHeadwiseExpand: x [..., NH*d] with w [NH, o, d] -> [..., NH*o]."""
    nh, o, d = w.shape
    xh = x.unflatten(-1, (nh, d))
    if d <= 8:  # tiny blocks (the mLSTM q/k/v): broadcast-multiply beats a batched matmul of 4x4s
        return (xh.unsqueeze(-2) * w).sum(-1).flatten(-2)
    lead = xh.shape[:-2]
    y = torch.matmul(xh.reshape(-1, nh, d).transpose(0, 1), w.transpose(1, 2))  # [NH, N, o]
    return y.transpose(0, 1).reshape(*lead, nh * o)


class MLSTMBlockStep(nn.Module):
    """mLSTM block (pre-norm, up-projection, conv, mLSTM cell, gated skip, down-projection, residual)."""

    def __init__(self, block, cell=None):
        super().__init__()
        self.cell = cell or mlstm_cell
        layer = block.xlstm
        self.NH = layer.config.num_heads
        self.inner = layer.config._inner_embedding_dim
        self.DH = self.inner // self.NH
        p = lambda t: nn.Parameter(t.detach().clone(), requires_grad=False)  # noqa: E731
        self.norm_w = p(block.xlstm_norm.weight)
        self.w_up = p(layer.proj_up.weight.t())  # [H, 2I]
        self.conv_w = p(layer.conv1d.conv.weight[:, 0, :].t())  # [K, I]
        self.conv_b = p(layer.conv1d.conv.bias)
        self.wq, self.wk, self.wv = p(layer.q_proj.weight), p(layer.k_proj.weight), p(layer.v_proj.weight)
        cell = layer.mlstm_cell
        self.w_if = p(torch.cat([cell.igate.weight, cell.fgate.weight], 0).t())  # [3I, 2NH]
        self.b_if = p(torch.cat([cell.igate.bias, cell.fgate.bias], 0))
        self.outnorm_w = p(cell.outnorm.weight)
        self.skip = p(layer.learnable_skip)
        self.w_down = p(layer.proj_down.weight.t())  # [I, H]

    def forward(self, x, valid0, C, n, m, conv):
        B, T, _ = x.shape
        NH, DH = self.NH, self.DH
        x_in = torch.matmul(norm(x, self.norm_w), self.w_up)
        x_m, z = x_in[..., : self.inner], x_in[..., self.inner :]
        xc, conv = causal_conv(x_m, conv, valid0, self.conv_w, self.conv_b)
        xc = F.silu(xc)
        q, k, v = headwise(xc, self.wq), headwise(xc, self.wk), headwise(x_m, self.wv)
        gates = torch.matmul(torch.cat([q, k, v], dim=-1), self.w_if) + self.b_if  # [B, T, 2NH]
        h, (C, n, m) = self.cell(q, k, v, gates[..., :NH], gates[..., NH:], valid0, C, n, m, NH, DH)
        h = head_norm(h, self.outnorm_w)  # [B, T, I]
        h = (h + self.skip * xc) * F.silu(z)
        return x + torch.matmul(h, self.w_down), (C, n, m, conv)


def mlstm_cell(q, k, v, i_raw, f_raw, valid0, C, n, m, NH, DH):
    """The mLSTM cell over one environment step (the unit a plugin node replaces).

    q, k, v [B, T, NH*DH]; i_raw, f_raw [B, T, NH] gate pre-activations; valid0 [B] (0 where token 0 is the
    skipped reward token of an episode start, whose state is also due for a reset). Returns h [B, T, NH, DH]
    and the new (C, n, m)."""
    ig, lf = i_raw, logsigmoid(f_raw)
    # An invalid token 0 gets i = -inf and log f = 0: the cell leaves C, n, m exactly as they were.
    ok = valid0[:, None] > 0.5
    ig = torch.cat([torch.where(ok, ig[:, 0], _NEG)[:, None], ig[:, 1:]], dim=1)
    lf = torch.cat([(lf[:, 0] * valid0[:, None])[:, None], lf[:, 1:]], dim=1)
    h, state = mlstm_chunk(q, k, v, ig.transpose(1, 2), lf.transpose(1, 2), C, n, m, NH, DH, keep=valid0)
    return h.transpose(1, 2), state


def mlstm_chunk(q, k, v, ig, lf, C, n, m, NH, DH, keep, eps: float = 1e-6):
    """The mLSTM cell over T tokens from state (C [B,NH,DH,DH], n [B,NH,DH,1], m [B,NH,1,1]).

    Same stabiliser as the token-by-token recurrence: m_t = max(log f_t + m_{t-1}, i_t). Rows with keep = 0
    start from a zero state: folded into the decay factors, so the big C is never rewritten just to zero it."""
    B, T = q.shape[0], q.shape[1]
    q = q.unflatten(-1, (NH, DH)).transpose(1, 2)  # [B, NH, T, DH]
    k = k.unflatten(-1, (NH, DH)).transpose(1, 2) / math.sqrt(DH)
    v = v.unflatten(-1, (NH, DH)).transpose(1, 2)
    a = torch.cumsum(lf, dim=-1)  # [B, NH, T] cumulative log forget
    keep = keep[:, None, None]
    m0 = m[..., 0] * keep  # [B, NH, 1]
    # m_t = max(a_t + m0, max_{j<=t} (a_t - a_j + i_j)), unrolled over the static T
    src = ig - a  # i_j - a_j
    run = src[..., :1]
    ms = []
    for t in range(T):
        if t:
            run = torch.maximum(run, src[..., t : t + 1])
        ms.append(torch.maximum(a[..., t : t + 1] + m0, a[..., t : t + 1] + run))
    mt = torch.cat(ms, dim=-1)  # [B, NH, T]
    # intra-chunk weights D[t, j] = exp(a_t - a_j + i_j - m_t) for j <= t
    logD = a[..., :, None] + src[..., None, :] - mt[..., :, None]  # [B, NH, T, T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    D = torch.exp(torch.where(causal, logD, _NEG))
    decay0 = (torch.exp(a + m0 - mt) * keep)[..., None]  # [B, NH, T, 1] weight of the carried-in state
    S = torch.matmul(q, k.transpose(-1, -2)) * D  # [B, NH, T, T]
    num = decay0 * torch.matmul(q, C) + torch.matmul(S, v)  # [B, NH, T, DH]
    qn = decay0 * torch.matmul(q, n) + S.sum(-1, keepdim=True)  # [B, NH, T, 1]
    denom = torch.maximum(qn.abs(), torch.exp(-mt)[..., None]) + eps
    h = num / denom
    # state after the chunk
    mT = mt[..., T - 1 :]  # [B, NH, 1]
    wT = torch.exp(a[..., T - 1 :] + src - mT)[..., None]  # [B, NH, T, 1]
    fT = (torch.exp(a[..., T - 1 :] + m0 - mT) * keep)[..., None]  # [B, NH, 1, 1]
    C = fT * C + torch.matmul((k * wT).transpose(-1, -2), v)
    n = fT * n + (k * wT).sum(dim=2)[..., None]
    return h, (C, n, mT[..., None])


class SLSTMBlockStep(nn.Module):
    """sLSTM block (pre-norm, conv, headwise gates, recurrent cell, group norm, residual, gated-GELU FFN)."""

    def __init__(self, block, cell=None):
        super().__init__()
        self.cell = cell or slstm_cell
        layer = block.xlstm
        cell = layer.slstm_cell
        self.NH = layer.config.num_heads
        self.H = layer.config.embedding_dim
        self.DH = self.H // self.NH
        p = lambda t: nn.Parameter(t.detach().clone(), requires_grad=False)  # noqa: E731
        self.norm_w = p(block.xlstm_norm.weight)
        self.conv_w = p(layer.conv1d.conv.weight[:, 0, :].t())
        self.conv_b = p(layer.conv1d.conv.bias)
        # The package feeds fgate's projection into the cell's i slot and igate's into f (layer.py): keep that.
        self.w_if = p(torch.cat([layer.fgate.weight, layer.igate.weight], dim=1).transpose(1, 2))  # [NH, DH, 2DH]
        self.w_zo = p(torch.cat([layer.zgate.weight, layer.ogate.weight], dim=1).transpose(1, 2))
        self.R = p(cell._recurrent_kernel)  # the vanilla layout [NH, 4*DH, DH]
        self.bias = p(cell._bias)  # [4*H] in (gate, head, dh) order
        self.gn_w = p(layer.group_norm.weight)
        self.ffn_norm_w = p(block.ffn_norm.weight)
        self.w_ffn_up = p(block.ffn.proj_up.weight.t())
        self.w_ffn_down = p(block.ffn.proj_down.weight.t())
        self.ffn_dim = block.ffn.config._proj_up_dim

    def _heads(self, x, w):  # x [B, T, H] -> [B, T, NH, 2*DH] through per-head [DH, 2DH] weights
        B, T, _ = x.shape
        xh = x.unflatten(-1, (self.NH, self.DH)).flatten(0, 1).transpose(0, 1)  # [NH, B*T, DH]
        return torch.matmul(xh, w).transpose(0, 1).unflatten(0, (-1, T)).unflatten(-1, (2, self.DH))

    def forward(self, x, valid0, h, c, n, m, conv):
        B, T, _ = x.shape
        xn = norm(x, self.norm_w)
        xc, conv = causal_conv(xn, conv, valid0, self.conv_w, self.conv_b)
        xc = F.silu(xc)
        g_if = self._heads(xc, self.w_if)  # [B, T, NH, 2, DH]
        g_zo = self._heads(xn, self.w_zo)
        wx = torch.cat([g_if, g_zo], dim=3).permute(0, 1, 3, 2, 4)  # [B, T, 4, NH, DH]
        y, (h, c, n, m) = self.cell(wx.flatten(2), valid0, h, c, n, m, self.R, self.bias, self.NH, self.DH)
        x = x + head_norm(y.unflatten(-1, (self.NH, self.DH)), self.gn_w)
        up = torch.matmul(norm(x, self.ffn_norm_w), self.w_ffn_up)
        ffn = F.gelu(up[..., : self.ffn_dim]) * up[..., self.ffn_dim :]
        return x + torch.matmul(ffn, self.w_ffn_down), (h, c, n, m, conv)


def slstm_cell(wx, valid0, h, c, n, m, R, bias, NH, DH):
    """The sLSTM cell over one environment step (the unit a plugin node replaces).

    wx [B, T, 4*H] input part of the gate pre-activations (gate, head, dh); states [B, H]; R [NH, 4*DH, DH];
    bias [4*H]. An invalid token 0 (valid0 = 0) leaves the state untouched. Returns y [B, T, H], (h, c, n, m)."""
    T = wx.shape[1]
    Rt = R.transpose(1, 2)  # [NH, DH, 4*DH]: h_k @ Rt_k gives head k's gates in (gate, dh) order
    ys = []
    for t in range(T):
        ry = torch.matmul(h.unflatten(-1, (NH, DH)).transpose(0, 1), Rt)  # [NH, B, 4DH]
        ry = ry.unflatten(-1, (4, DH)).permute(1, 2, 0, 3).flatten(1)  # [B, 4H] in (gate, head, dh)
        raw = (wx[:, t] + ry + bias).unflatten(-1, (4, NH * DH))
        new = slstm_pointwise(raw, c, n, m)
        if t == 0:
            keep = valid0[:, None] > 0.5
            new = tuple(torch.where(keep, a, b) for a, b in zip(new, (h, c, n, m)))
        h, c, n, m = new
        ys.append(h)
    return torch.stack(ys, dim=1), (h, c, n, m)


def slstm_pointwise(raw, c, n, m):
    """raw [B, 4, H] gate pre-activations (i, f, z, o); states [B, H]."""
    i_raw, f_raw, z_raw, o_raw = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
    logfm = m + logsigmoid(f_raw)
    m_new = torch.where(n == 0, i_raw, torch.maximum(i_raw, logfm))  # a fresh unit has no history to stabilise
    i_g = torch.clamp(torch.exp(i_raw - m_new), max=1.0)
    f_g = torch.clamp(torch.exp(logfm - m_new), max=1.0)
    c_new = f_g * c + i_g * torch.tanh(z_raw)
    n_new = f_g * n + i_g
    h_new = torch.sigmoid(o_raw) * c_new / n_new
    return h_new, c_new, n_new, m_new
