"""Export-friendly step functions for one environment step (a chunk of T tokens) through each xLSTM block.

Functional: state in, state out, nothing mutated in place, no data-dependent Python branches, and an exact
logsigmoid (-softplus(-x); ONNX Runtime's Log(Sigmoid(x)) is -inf below about -18 and wipes the memory).
They read the weights of the trained xlstm modules and reproduce the package's math, checked against its own
parallel forward and step(). Token 0 of a chunk may be invalid (the reward token at an episode start): an
invalid token leaves the recurrent state unchanged.

The mLSTM cell runs the chunk in its parallel (chunkwise) form: the matrix memory C is read once for the
three readouts and once for the update, instead of three sequential read-modify-writes.

Graph size matters as much as arithmetic on a CPU (each ONNX node costs microseconds): every shape here is a
Python constant except the batch, which is always the single -1 of a reshape, so the exporter emits no
Shape/Gather/Concat chains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lram.runtime.manifest import STATE_ROLES

NEG = -1e30  # "minus infinity" that keeps max/exp free of inf - inf


@dataclass(frozen=True)
class StatePart:
    """One recurrent state tensor of a block, declared next to the math that reads and writes it.

    Everything else (graph inputs/outputs, the manifest, the runtime's slots, verify, calibration's state
    error, the TensorRT backend, the bench) learns the state from these declarations through the manifest.
    """

    part: str  # "C": unique within its block
    shape: tuple  # without the batch dimension
    role: str  # one of runtime.manifest.STATE_ROLES
    stabiliser: str | None = None  # the part whose value is this one's log scale (C, n and c under m)
    reset_in_cell: bool = False  # the cell folds the episode reset into its own math: no zeroing pass over it

    def __post_init__(self):
        if self.role not in STATE_ROLES:
            raise ValueError(f"state part {self.part!r}: unknown role {self.role!r} (one of {STATE_ROLES})")


def logsigmoid(x: torch.Tensor) -> torch.Tensor:
    return -F.softplus(-x)


def norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The xlstm LayerNorm: no bias, scale (1 + weight)."""
    return F.layer_norm(x, (weight.numel(),), 1.0 + weight, eps=eps)


def head_norm(x: torch.Tensor, weight: torch.Tensor, T: int, NH: int, DH: int, eps: float = 1e-5) -> torch.Tensor:
    """MultiHeadLayerNorm: x [B, T, NH, DH] normalised per head, scale (1 + weight) over NH*DH -> [B, T, NH*DH]."""
    return F.layer_norm(x, (DH,), eps=eps).reshape(-1, T, NH * DH) * (1.0 + weight)


def token_masks(valid0: torch.Tensor, T: int):
    """valid0 [B] -> (tok [B, T, 1]: 1 for a real token, neg [B, T, 1]: NEG for the skipped one, else 0)."""
    first_token = torch.tensor([1.0] + [0.0] * (T - 1))
    tok = 1.0 - (1.0 - valid0)[:, None] * first_token  # [B, T]
    return tok[..., None], ((1.0 - tok) * NEG)[..., None]


def causal_conv(x: torch.Tensor, conv_state: torch.Tensor, tok: torch.Tensor, w: torch.Tensor, b: torch.Tensor, T: int):
    """Depthwise causal conv over a chunk. x [B, T, D]; conv_state [B, K, D] holds the last K inputs; w [K, D].

    An invalid token 0 enters as zeros: it is only ever invalid at an episode start, where the state is zero,
    so a zero input leaves exactly the windows a skipped token would."""
    K = w.shape[0]
    full = torch.cat([conv_state, x * tok], dim=1)  # [B, K + T, D]
    windows = torch.arange(T)[:, None] + torch.arange(1, K + 1)[None, :]  # [T, K]: y_t = sum_j w_j full[t + 1 + j]
    # one Gather + Mul + ReduceSum instead of K Slice/Mul/Add triples (fewer ONNX nodes, measured no slower)
    return (full[:, windows] * w).sum(2) + b, full[:, T:]


def headwise_small(x: torch.Tensor, w: torch.Tensor, T: int) -> torch.Tensor:
    """LinearHeadwiseExpand with tiny blocks (the mLSTM q/k/v, 4x4): x [B, T, NH*d], w [o, d, NH] -> [B, T, NH, o].

    A broadcast multiply beats a batched matmul of 4x4 matrices, provided the NH blocks are the innermost axis:
    with d innermost ONNX Runtime broadcasts in spans of 4 floats (measured, one thread, 256 blocks of 8x4:
    1.02 ms at batch 16 vs 0.27 ms with the blocks innermost; 0.066 vs 0.020 ms at batch 1)."""
    o, d, nh = w.shape
    xt = x.reshape(-1, T, nh, d).transpose(2, 3).unsqueeze(2)  # [B, T, 1, d, NH]
    return (xt * w).sum(3).transpose(2, 3)


def blocks_last(w: torch.Tensor) -> torch.Tensor:
    """An xlstm headwise weight [NH, o, d] in headwise_small's layout [o, d, NH]."""
    return w.permute(1, 2, 0).contiguous()


def mlstm_layer_core(x_in, valid0, C, n, m, conv, conv_w, conv_b, w_qk, wv, w_if, b_if, outnorm_w, skip,
                     T: int, NH: int, DH: int, cell=None):
    """The mLSTM layer between its up- and down-projection (the unit the native flavour's node replaces).

    x_in [B, T, 2I] is the up-projection's output (the cell's input half, then the gate z); returns the
    gated cell output [B, T, I] (before the down-projection) and the new (C, n, m, conv). ``cell`` is the
    memory update (``mlstm_cell`` or a flavour's equivalent)."""
    cell = cell or mlstm_cell
    I = NH * DH
    tok, _ = token_masks(valid0, T)
    x_m, z = x_in.split(I, dim=-1)
    xc, conv = causal_conv(x_m, conv, tok, conv_w, conv_b, T)
    xc = F.silu(xc)
    qk = headwise_small(xc, w_qk, T)  # [B, T, I/4, 8]
    half = w_qk.shape[0] // 2
    q, k = (t.reshape(-1, T, I) for t in qk.split(half, dim=-1))
    v = headwise_small(x_m, wv, T).reshape(-1, T, I)
    gates = torch.matmul(torch.cat([q, k, v], dim=-1), w_if) + b_if  # [B, T, 2NH]
    i_raw, f_raw = gates.split(NH, dim=-1)
    h, (C, n, m) = cell(q, k, v, i_raw, f_raw, valid0, C, n, m, NH, DH)
    h = head_norm(h, outnorm_w, T, NH, DH)  # [B, T, I]
    return (h + skip * xc) * F.silu(z), (C, n, m, conv)


class MLSTMBlockStep(nn.Module):
    """mLSTM block (pre-norm, up-projection, conv, mLSTM cell, gated skip, down-projection, residual).

    ``cell`` replaces the memory update (the ort and plugin flavours), ``core`` the whole layer between the
    projections (the native flavour: ``mlstm_layer_core``'s signature, with ``folds_reset`` like a cell)."""

    kind = "mlstm"

    def __init__(self, block, cell=None, core=None):
        super().__init__()
        self.cell = cell or mlstm_cell
        self.core = core
        layer = block.xlstm
        self.NH = layer.config.num_heads
        self.inner = layer.config._inner_embedding_dim
        self.DH = self.inner // self.NH
        self.K = layer.config.conv1d_kernel_size
        p = lambda t: nn.Parameter(t.detach().clone(), requires_grad=False)  # noqa: E731
        self.norm_w = p(block.xlstm_norm.weight)
        self.w_up = p(layer.proj_up.weight.t())  # [H, 2I]
        self.conv_w = p(layer.conv1d.conv.weight[:, 0, :].t())  # [K, I]
        self.conv_b = p(layer.conv1d.conv.bias)
        self.w_qk = p(blocks_last(torch.cat([layer.q_proj.weight, layer.k_proj.weight], dim=1)))  # [8, 4, I/4]: q and k
        self.wv = p(blocks_last(layer.v_proj.weight))
        cell = layer.mlstm_cell
        self.w_if = p(torch.cat([cell.igate.weight, cell.fgate.weight], 0).t())  # [3I, 2NH]
        self.b_if = p(torch.cat([cell.igate.bias, cell.fgate.bias], 0))
        self.outnorm_w = p(cell.outnorm.weight)
        self.skip = p(layer.learnable_skip)
        self.w_down = p(layer.proj_down.weight.t())  # [I, H]

    def state_parts(self) -> tuple[StatePart, ...]:
        """In the order forward() takes and returns them."""
        folded = getattr(self.core or self.cell, "folds_reset", ())
        NH, DH = self.NH, self.DH
        return (StatePart("C", (NH, DH, DH), "memory", "m", "C" in folded),
                StatePart("n", (NH, DH, 1), "normaliser", "m", "n" in folded),
                StatePart("m", (NH, 1, 1), "stabiliser"),
                StatePart("conv", (self.K, self.inner), "conv_window"))

    def forward(self, x, valid0, T: int, C, n, m, conv):
        x_in = torch.matmul(norm(x, self.norm_w), self.w_up)
        weights = (self.conv_w, self.conv_b, self.w_qk, self.wv, self.w_if, self.b_if, self.outnorm_w, self.skip)
        if self.core is not None:
            h, state = self.core(x_in, valid0, C, n, m, conv, *weights, T, self.NH, self.DH)
        else:
            h, state = mlstm_layer_core(x_in, valid0, C, n, m, conv, *weights, T, self.NH, self.DH, self.cell)
        return x + torch.matmul(h, self.w_down), state


def mlstm_cell(q, k, v, i_raw, f_raw, valid0, C, n, m, NH: int, DH: int):
    """The mLSTM cell over one environment step (the unit a plugin node replaces).

    q, k, v [B, T, NH*DH]; i_raw, f_raw [B, T, NH] gate pre-activations; valid0 [B] (0 where token 0 is the
    skipped reward token of an episode start, whose state is also due for a reset: the reset is folded into
    the decay factors, so the big C is never rewritten just to zero it). Returns h [B, T, NH, DH] and the new
    (C [B, NH, DH, DH], n [B, NH, DH, 1], m [B, NH, 1, 1]).

    Same stabiliser as the token-by-token recurrence, m_t = max(log f_t + m_{t-1}, i_t), unrolled:
    m_t = max(a_t + m_0, max_{j<=t} (a_t - a_j + i_j)) with a_t the cumulative log forget gate.
    """
    T = int(i_raw.shape[1])  # static: the chunk length is fixed when the graph is built
    tok, neg = token_masks(valid0, T)
    # An invalid token 0 gets i = -inf and log f = 0: the cell leaves C, n, m exactly as they were.
    ig = (i_raw + neg).transpose(1, 2)  # [B, NH, T]
    lf = (logsigmoid(f_raw) * tok).transpose(1, 2)
    keep = valid0.reshape(-1, 1, 1)
    q = q.reshape(-1, T, NH, DH).transpose(1, 2)  # [B, NH, T, DH]
    k = k.reshape(-1, T, NH, DH).transpose(1, 2) * (1.0 / math.sqrt(DH))
    v = v.reshape(-1, T, NH, DH).transpose(1, 2)
    m0 = m.reshape(-1, NH, 1) * keep  # [B, NH, 1]
    a = torch.cumsum(lf, dim=-1)  # [B, NH, T]
    src = ig - a  # i_j - a_j
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    logD = torch.where(causal, a.unsqueeze(-1) + src.unsqueeze(-2), torch.tensor(NEG))  # [B, NH, T, T]
    mt = torch.maximum(a + m0, logD.amax(dim=-1))  # [B, NH, T]
    D = torch.exp(logD - mt.unsqueeze(-1))
    decay0 = (torch.exp(a + m0 - mt) * keep).unsqueeze(-1)  # [B, NH, T, 1] weight of the carried-in state
    S = torch.matmul(q, k.transpose(-1, -2)) * D  # [B, NH, T, T]
    num = decay0 * torch.matmul(q, C) + torch.matmul(S, v)  # [B, NH, T, DH]
    qn = decay0 * torch.matmul(q, n) + S.sum(-1, keepdim=True)  # [B, NH, T, 1]
    h = num / (torch.maximum(qn.abs(), torch.exp(-mt).unsqueeze(-1)) + 1e-6)
    # the state after the chunk
    aT, mT = a[..., T - 1 :], mt[..., T - 1 :]  # [B, NH, 1]
    kw = k * torch.exp(aT + src - mT).unsqueeze(-1)  # [B, NH, T, DH]
    fT = (torch.exp(aT + m0 - mT) * keep).unsqueeze(-1)  # [B, NH, 1, 1]
    C = fT * C + torch.matmul(kw.transpose(-1, -2), v)
    n = fT * n + kw.sum(dim=2).unsqueeze(-1)
    return h.transpose(1, 2), (C, n, mT.unsqueeze(-1))


mlstm_cell.folds_reset = ("C", "n")  # see above: the carried-in state is weighted by keep, never rewritten


def heads(x: torch.Tensor, w: torch.Tensor, T: int, NH: int, DH: int) -> torch.Tensor:
    """x [B, T, NH*DH] -> [B, T, 2, NH, DH] through per-head [DH, 2DH] weights w [NH, DH, 2DH]."""
    xh = x.reshape(-1, NH, DH).transpose(0, 1)  # [NH, B*T, DH]
    y = torch.matmul(xh, w)  # [NH, B*T, 2DH]
    return y.reshape(NH, -1, T, 2, DH).permute(1, 2, 3, 0, 4)


def slstm_layer_core(xn, valid0, h, c, n, m, conv, conv_w, conv_b, w_if, w_zo, R, bias, gn_w, T: int, NH: int,
                     DH: int, cell=None):
    """The sLSTM layer between its pre-norm and the residual add.

    xn [B, T, H] is the normed block input; returns the group-normed cell output [B, T, H] and the new
    (h, c, n, m, conv). ``cell`` is the recurrence (``slstm_cell`` or a flavour's equivalent)."""
    cell = cell or slstm_cell
    H = NH * DH
    tok, _ = token_masks(valid0, T)
    xc, conv = causal_conv(xn, conv, tok, conv_w, conv_b, T)
    xc = F.silu(xc)
    wx = torch.cat([heads(xc, w_if, T, NH, DH), heads(xn, w_zo, T, NH, DH)], dim=2)  # [B, T, 4, NH, DH]
    y, (h, c, n, m) = cell(wx.reshape(-1, T, 4 * H), valid0, h, c, n, m, R, bias, NH, DH)
    return head_norm(y.reshape(-1, T, NH, DH), gn_w, T, NH, DH), (h, c, n, m, conv)


class SLSTMBlockStep(nn.Module):
    """sLSTM block (pre-norm, conv, headwise gates, recurrent cell, group norm, residual, gated-GELU FFN).

    ``cell`` replaces the recurrence (the plugin and native flavours)."""

    kind = "slstm"

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
        self.K = layer.config.conv1d_kernel_size

    def state_parts(self) -> tuple[StatePart, ...]:
        """In the order forward() takes and returns them."""
        H = (self.H,)
        return (StatePart("h", H, "hidden"), StatePart("c", H, "memory", "m"), StatePart("n", H, "normaliser", "m"),
                StatePart("m", H, "stabiliser"), StatePart("conv", (self.K, self.H), "conv_window"))

    def forward(self, x, valid0, T: int, h, c, n, m, conv):
        xn = norm(x, self.norm_w)
        y, state = slstm_layer_core(xn, valid0, h, c, n, m, conv, self.conv_w, self.conv_b, self.w_if, self.w_zo,
                                    self.R, self.bias, self.gn_w, T, self.NH, self.DH, self.cell)
        x = x + y
        up = torch.matmul(norm(x, self.ffn_norm_w), self.w_ffn_up)
        gate, up = up.split(self.ffn_dim, dim=-1)
        return x + torch.matmul(F.gelu(gate) * up, self.w_ffn_down), state


def slstm_cell(wx, valid0, h, c, n, m, R, bias, NH: int, DH: int):
    """The sLSTM cell over one environment step (the unit a plugin node replaces).

    wx [B, T, 4*H] input part of the gate pre-activations (gate, head, dh); states [B, H]; R [NH, 4*DH, DH];
    bias [4*H]. An invalid token 0 (valid0 = 0) leaves the state untouched. Returns y [B, T, H], (h, c, n, m).
    """
    T, H = int(wx.shape[1]), NH * DH  # static: the chunk length is fixed when the graph is built
    Rt = R.transpose(1, 2)  # [NH, DH, 4*DH]: h_k @ Rt_k gives head k's gates in (gate, dh) order
    keep = valid0[:, None] > 0.5
    ys = []
    for t in range(T):
        ry = torch.matmul(h.reshape(-1, NH, DH).transpose(0, 1), Rt)  # [NH, B, 4DH]
        ry = ry.reshape(NH, -1, 4, DH).permute(1, 2, 0, 3).reshape(-1, 4 * H)  # (gate, head, dh)
        raw = wx[:, t] + ry + bias  # [B, 4H]
        new = slstm_pointwise(raw, c, n, m)
        if t == 0:
            new = tuple(torch.where(keep, a, b) for a, b in zip(new, (h, c, n, m)))
        h, c, n, m = new
        ys.append(h)
    return torch.stack(ys, dim=1), (h, c, n, m)


def slstm_pointwise(raw, c, n, m):
    """raw [B, 4*H] gate pre-activations (i, f, z, o), H each; states [B, H]. One Split, no Squeeze nodes."""
    i_raw, f_raw, z_raw, o_raw = raw.split(int(c.shape[-1]), dim=-1)
    logfm = m + logsigmoid(f_raw)
    m_new = torch.where(n == 0, i_raw, torch.maximum(i_raw, logfm))  # a fresh unit has no history to stabilise
    i_g = torch.clamp(torch.exp(i_raw - m_new), max=1.0)
    f_g = torch.clamp(torch.exp(logfm - m_new), max=1.0)
    c_new = f_g * c + i_g * torch.tanh(z_raw)
    n_new = f_g * n + i_g
    h_new = torch.sigmoid(o_raw) * c_new / n_new
    return h_new, c_new, n_new, m_new
