"""NumPy reference of the fused step kernels (kernels/step_kernels.py, Triton).

Same math, same layouts, same argument order as the kernels (launch contract in step_kernels.py), vectorised
over the batch so ONNX Runtime can use it for the plugin flavour's custom nodes. No torch.
Computation runs in ``dtype`` (float32 by default; pass float64 for a high-precision reference).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6


def logsigmoid(x):
    """Exact log(sigmoid(x)) = -softplus(-x); finite for large negative x."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _valid_mask(valid, B, T, dtype):
    if valid is None:
        return np.ones((B, T), dtype=bool)
    v = np.asarray(valid)
    if v.shape != (B, T):
        raise ValueError(f"valid must have shape {(B, T)}, got {v.shape}")
    return v != 0


def mlstm_cell_step(q, k, v, igate, fgate, valid, C, n, m, *, dtype=np.float32):
    """mLSTM over T tokens.

    q, k, v [B,T,NH,DH]; igate, fgate [B,T,NH]; valid [B,T] (0 = invalid: state unchanged);
    C [B,NH,DH,DH], n [B,NH,DH,1], m [B,NH,1,1]. Returns h [B,T,NH,DH], C', n', m'.
    """
    q, k, v, igate, fgate, C, n, m = (np.asarray(a, dtype=dtype) for a in (q, k, v, igate, fgate, C, n, m))
    B, T, NH, DH = q.shape
    ok = _valid_mask(valid, B, T, dtype)
    C, n, m = C.copy(), n[..., 0].copy(), m[..., 0, 0].copy()  # n [B,NH,DH], m [B,NH]
    scale = dtype(1.0) / np.sqrt(dtype(DH))
    h = np.empty((B, T, NH, DH), dtype=dtype)
    for t in range(T):
        okt = ok[:, t][:, None]  # [B,1]
        logf = logsigmoid(fgate[:, t])  # [B,NH]
        ig = igate[:, t]
        m_new = np.where(okt, np.maximum(logf + m, ig), m)
        fa = np.where(okt, np.exp(logf + m - m_new), dtype(1))
        ia = np.where(okt, np.exp(ig - m_new), dtype(0))
        ks = k[:, t] * scale  # [B,NH,DH]
        C = fa[..., None, None] * C + ia[..., None, None] * (ks[..., :, None] * v[:, t][..., None, :])
        n = fa[..., None] * n + ia[..., None] * ks
        qt = q[:, t]
        num = np.einsum("bhi,bhij->bhj", qt, C)
        qn = np.einsum("bhi,bhi->bh", qt, n)
        den = np.maximum(np.abs(qn), np.exp(-m_new)) + dtype(EPS)
        h[:, t] = num / den[..., None]
        m = m_new
    return h, C, n[..., None], m[..., None, None]


def slstm_cell_step(wx, valid, h, c, n, m, R, b, *, dtype=np.float32):
    """sLSTM over T tokens.

    wx [B,T,4H] gate-major (i,f,z,o; head; dh); valid [B,T]; h,c,n,m [B,H]; R [NH,4DH,DH] (vanilla
    backend layout); b [4H]. Returns y [B,T,H] (the h after each token), h', c', n', m'.
    """
    wx, h, c, n, m, R, b = (np.asarray(a, dtype=dtype) for a in (wx, h, c, n, m, R, b))
    B, T, G = wx.shape
    NH, G4DH, DH = R.shape
    H = NH * DH
    if G != 4 * H or G4DH != 4 * DH or b.shape != (4 * H,):
        raise ValueError(f"inconsistent sLSTM shapes: wx {wx.shape}, R {R.shape}, b {b.shape}")
    ok = _valid_mask(valid, B, T, dtype)
    h, c, n, m = h.copy(), c.copy(), n.copy(), m.copy()
    y = np.empty((B, T, H), dtype=dtype)
    bg = b.reshape(4, H)
    for t in range(T):
        # Ry[b, g, k, e] = sum_d R[k, g*DH+e, d] h[b, k, d]
        ry = np.einsum("kjd,bkd->bkj", R, h.reshape(B, NH, DH)).reshape(B, NH, 4, DH)
        ry = ry.transpose(0, 2, 1, 3).reshape(B, 4, H)
        raw = (wx[:, t].reshape(B, 4, H) + ry) + bg
        iraw, fraw, zraw, oraw = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
        logfplusm = m + logsigmoid(fraw)
        m_new = np.where(n == 0, iraw, np.maximum(iraw, logfplusm))
        ig = np.minimum(np.exp(iraw - m_new), 1)
        fg = np.minimum(np.exp(logfplusm - m_new), 1)
        og = 1 / (1 + np.exp(-oraw))
        c_new = fg * c + ig * np.tanh(zraw)
        n_new = fg * n + ig
        h_new = og * c_new / n_new
        okt = ok[:, t][:, None]
        h, c, n, m = (np.where(okt, new, old) for new, old in ((h_new, h), (c_new, c), (n_new, n), (m_new, m)))
        y[:, t] = h
    return y, h, c, n, m


def rel_err(a, b) -> float:
    """max |a - b| / max(max |b|, tiny): the error measure of the GPU checks."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30)) if a.size else 0.0


def random_mlstm_inputs(B, T, NH, DH, *, seed=0, steps_warm=True, valid_first=None):
    """Random inputs of the mLSTM kernel; a non-trivial state (as after some steps) when steps_warm."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    q, k, v = (rng.standard_normal((B, T, NH, DH)).astype(f32) for _ in range(3))
    ig = rng.standard_normal((B, T, NH)).astype(f32) * 2
    fg = (rng.standard_normal((B, T, NH)) * 2 + 3).astype(f32)
    valid = np.ones((B, T), f32)
    if valid_first is not None:
        valid[:, 0] = np.asarray(valid_first, f32)
    if steps_warm:
        C = rng.standard_normal((B, NH, DH, DH)).astype(f32) * 0.1
        n = rng.standard_normal((B, NH, DH, 1)).astype(f32) * 0.1
        m = rng.standard_normal((B, NH, 1, 1)).astype(f32)
    else:
        C, n, m = np.zeros((B, NH, DH, DH), f32), np.zeros((B, NH, DH, 1), f32), np.zeros((B, NH, 1, 1), f32)
    return dict(q=q, k=k, v=v, igate=ig, fgate=fg, valid=valid, C=C, n=n, m=m)


def random_slstm_inputs(B, T, NH, DH, *, seed=0, steps_warm=True, valid_first=None):
    """Random inputs of the sLSTM kernel (non-zero recurrent weights)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    H = NH * DH
    wx = rng.standard_normal((B, T, 4 * H)).astype(f32)
    R = (rng.standard_normal((NH, 4 * DH, DH)) / np.sqrt(DH)).astype(f32)
    b = rng.standard_normal(4 * H).astype(f32) * 0.5
    valid = np.ones((B, T), f32)
    if valid_first is not None:
        valid[:, 0] = np.asarray(valid_first, f32)
    if steps_warm:
        h = rng.standard_normal((B, H)).astype(f32) * 0.5
        c = rng.standard_normal((B, H)).astype(f32)
        n = (np.abs(rng.standard_normal((B, H))) + 0.5).astype(f32)
        m = rng.standard_normal((B, H)).astype(f32)
    else:
        h = c = n = m = np.zeros((B, H), f32)
    return dict(wx=wx, valid=valid, h=h, c=c, n=n, m=m, R=R, b=b)
