"""The native flavour's nodes, called from Python: the compiled ``_xlstm_native`` (xlstm_native.c).

One call = one node of a native-flavour graph, for every robot at once:
- ``lram.native::MLSTMLayer``: export/cells.py's ``mlstm_layer_core`` (conv, headwise q/k/v, gates, the mLSTM
  cell, head norm, skip and output gate), one pass over the matrix memory;
- ``lram.native::SLSTMCell``: ``slstm_cell``, the sLSTM recurrence and its gates over the step's tokens.
The state arrays stay numpy arrays owned by the Policy; ONNX Runtime never sees them.
"""
from __future__ import annotations

import numpy as np

from .backend import BackendUnavailable

DOMAIN = "lram.native"
MLSTM_OP, SLSTM_OP = "MLSTMLayer", "SLSTMCell"


def load_kernels():
    """The compiled module, or BackendUnavailable saying why there is none and what to run instead."""
    try:
        from . import _xlstm_native
    except ImportError as e:
        raise BackendUnavailable(
            f"this install has no compiled native xLSTM layers (lram.runtime._xlstm_native: {e}); they are built by "
            "'pip install' where a C compiler exists. Reinstall with one, or export with --flavour ort") from None
    return _xlstm_native


def _f32(op: str, name: str, x: np.ndarray, shape: tuple, dtype=np.float32) -> np.ndarray:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{op} node: {name} has shape {tuple(x.shape)}, expected {tuple(shape)}")
    return np.ascontiguousarray(x, dtype=dtype)


def _aligned_empty(shape) -> np.ndarray:
    """An uninitialised float32 array whose data starts on a 64-byte boundary (the core streams C' into it)."""
    n = int(np.prod(shape))
    raw = np.empty(n + 16, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip : skip + n].reshape(shape)


def _in_parts(pool, B: int, run) -> None:
    """run(lo, hi) over the robots [0, B): in one call, or split across ``pool``'s threads and the caller's. The
    compiled calls release the GIL and robots are independent, so the parts run in parallel; rows of C-contiguous
    arrays stay C-contiguous (and C' stays 64-byte aligned: a robot's C is a multiple of 64 bytes)."""
    parts = 1 if pool is None else min(B, pool._max_workers + 1)
    if parts == 1:
        run(0, B)
        return
    bounds = [B * i // parts for i in range(parts + 1)]
    others = [pool.submit(run, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    try:
        run(bounds[0], bounds[1])
    finally:
        for f in others:
            f.result()


def _rows(arrays, batched, lo, hi):
    return [x[lo:hi] if i in batched else x for i, x in enumerate(arrays)]


def mlstm_layer(kernels, x_in, valid0, C, n, m, conv, conv_w, conv_b, w_qk, wv, w_if, b_if, outnorm_w, skip, pool=None):
    """(h [B, T, I], C', n', m', conv') as fresh arrays; the inputs are not modified. ``pool``: a thread pool to
    split the robots over (the backend's threads beyond the first)."""
    B, T, I2 = x_in.shape
    NH, DH = C.shape[1], C.shape[2]
    I, K = NH * DH, conv.shape[1]
    o2, d, NB = w_qk.shape
    if I2 != 2 * I or o2 != 2 * d or d * NB != I:
        raise ValueError(f"{MLSTM_OP} node: x_in {tuple(x_in.shape)}, C {tuple(C.shape)} and w_qk {tuple(w_qk.shape)} "
                         "do not describe one layer")
    f = lambda name, x, shape: _f32(MLSTM_OP, name, x, shape)  # noqa: E731
    bf16 = C.dtype.name == "bfloat16"  # the opt-in bf16 matrix memory (calibration/state_bf16.py)
    if bf16:  # the kernel takes its 16-bit words
        C_arg, C_out = _f32(MLSTM_OP, "C", C, (B, NH, DH, DH), C.dtype).view(np.uint16), np.empty(C.shape, C.dtype)
    else:
        C_arg, C_out = f("C", C, (B, NH, DH, DH)), _aligned_empty((B, NH, DH, DH))
    args = [f("x_in", x_in, (B, T, 2 * I)), f("valid0", valid0, (B,)), C_arg,
            f("n", n, (B, NH, DH, 1)), f("m", m, (B, NH, 1, 1)), f("conv", conv, (B, K, I)),
            f("conv_w", conv_w, (K, I)), f("conv_b", conv_b, (I,)), f("w_qk", w_qk, (2 * d, d, NB)),
            f("wv", wv, (d, d, NB)), f("w_if", w_if, (3 * I, 2 * NH)), f("b_if", b_if, (2 * NH,)),
            f("outnorm_w", outnorm_w, (I,)), f("skip", skip, (I,))]
    out = (np.empty((B, T, I), np.float32), C_out,
           np.empty((B, NH, DH, 1), np.float32), np.empty((B, NH, 1, 1), np.float32), np.empty((B, K, I), np.float32))
    outs = [out[0], C_out.view(np.uint16) if bf16 else C_out, *out[2:]]
    _in_parts(pool, B, lambda lo, hi: kernels.mlstm_layer(*_rows(args, range(6), lo, hi), *(o[lo:hi] for o in outs),
                                                          hi - lo, T, NH, DH, K, NB, bf16))
    return out


def slstm_cell(kernels, wx, valid0, h, c, n, m, Rt, bias, pool=None):
    """(y [B, T, H], h', c', n', m') as fresh arrays; the inputs are not modified. ``pool``: as for mlstm_layer."""
    B, T, H4 = wx.shape
    NH, DH = Rt.shape[0], Rt.shape[1]
    H = NH * DH
    if H4 != 4 * H or Rt.shape[2] != 4 * DH:
        raise ValueError(f"{SLSTM_OP} node: wx {tuple(wx.shape)} and Rt {tuple(Rt.shape)} do not describe one cell")
    f = lambda name, x, shape: _f32(SLSTM_OP, name, x, shape)  # noqa: E731
    args = [f("wx", wx, (B, T, 4 * H)), f("valid0", valid0, (B,)), *(f(k, x, (B, H)) for k, x in zip("hcnm", (h, c, n, m))),
            f("Rt", Rt, (NH, DH, 4 * DH)), f("bias", bias, (4 * H,))]
    out = (np.empty((B, T, H), np.float32), *(np.empty((B, H), np.float32) for _ in range(4)))
    _in_parts(pool, B, lambda lo, hi: kernels.slstm_cell(*_rows(args, range(6), lo, hi), *(o[lo:hi] for o in out),
                                                         hi - lo, T, NH, DH))
    return out


# node op -> its call; a graph with any other lram.native op is refused at load
LAYERS = {MLSTM_OP: mlstm_layer, SLSTM_OP: slstm_cell}
