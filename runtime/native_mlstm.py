"""The native flavour's mLSTM layer core, called from Python: the compiled ``_mlstm_native`` (mlstm_native.c).

One call = one ``lram.native::MLSTMLayer`` node of a native-flavour graph: export/cells.py's
``mlstm_layer_core`` (conv, headwise q/k/v, gates, the mLSTM cell, head norm, skip and output gate) over one
environment step for every robot, with one pass over the matrix memory. The state arrays stay numpy arrays
owned by the Policy; ONNX Runtime never sees them.
"""
from __future__ import annotations

import numpy as np

from .backend import BackendUnavailable

DOMAIN = "lram.native"
OP = "MLSTMLayer"
# the node's inputs, in order (export/native_layers.py writes them so); outputs: h, C, n, m, conv
INPUTS = ("x_in", "valid0", "C", "n", "m", "conv", "conv_w", "conv_b", "w_qk", "wv", "w_if", "b_if", "outnorm_w", "skip")


def load_kernel():
    """The compiled core, or BackendUnavailable saying why there is none and what to run instead."""
    try:
        from . import _mlstm_native
    except ImportError as e:
        raise BackendUnavailable(
            f"this install has no compiled native mLSTM layer (lram.runtime._mlstm_native: {e}); it is built by "
            "'pip install' where a C compiler exists. Reinstall with one, or export with --flavour ort") from None
    return _mlstm_native.mlstm_layer


def _f32(name: str, x: np.ndarray, shape: tuple) -> np.ndarray:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"mLSTM layer node: {name} has shape {tuple(x.shape)}, expected {tuple(shape)}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _aligned_empty(shape) -> np.ndarray:
    """An uninitialised float32 array whose data starts on a 64-byte boundary (the core streams C' into it)."""
    n = int(np.prod(shape))
    raw = np.empty(n + 16, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip : skip + n].reshape(shape)


def mlstm_layer(kernel, x_in, valid0, C, n, m, conv, conv_w, conv_b, w_qk, wv, w_if, b_if, outnorm_w, skip):
    """(h [B, T, I], C', n', m', conv') as fresh arrays; the inputs are not modified."""
    B, T, I2 = x_in.shape
    NH, DH = C.shape[1], C.shape[2]
    I, K = NH * DH, conv.shape[1]
    o2, d, NB = w_qk.shape
    if I2 != 2 * I or o2 != 2 * d or d * NB != I:
        raise ValueError(f"mLSTM layer node: x_in {tuple(x_in.shape)}, C {tuple(C.shape)} and w_qk {tuple(w_qk.shape)} "
                         "do not describe one layer")
    args = [_f32("x_in", x_in, (B, T, 2 * I)), _f32("valid0", valid0, (B,)), _f32("C", C, (B, NH, DH, DH)),
            _f32("n", n, (B, NH, DH, 1)), _f32("m", m, (B, NH, 1, 1)), _f32("conv", conv, (B, K, I)),
            _f32("conv_w", conv_w, (K, I)), _f32("conv_b", conv_b, (I,)), _f32("w_qk", w_qk, (2 * d, d, NB)),
            _f32("wv", wv, (d, d, NB)), _f32("w_if", w_if, (3 * I, 2 * NH)), _f32("b_if", b_if, (2 * NH,)),
            _f32("outnorm_w", outnorm_w, (I,)), _f32("skip", skip, (I,))]
    out = (np.empty((B, T, I), np.float32), _aligned_empty((B, NH, DH, DH)),
           np.empty((B, NH, DH, 1), np.float32), np.empty((B, NH, 1, 1), np.float32), np.empty((B, K, I), np.float32))
    kernel(*args, *out, B, T, NH, DH, K, NB)
    return out
