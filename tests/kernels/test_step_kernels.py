"""The Triton step kernels on the CPU (Triton interpreter) against the NumPy reference (float64).

Shapes: batch 1, 3 and 16; the mLSTM head sizes of every preset (32 to 640) and sLSTM heads 16 to 320, the big
ones restricted to a few column strips (the strips are independent by construction, the strip index maths is
covered in full at the small sizes); invalid (skipped) tokens in some rows; forget-gate pre-activations of
-40; trained weights of the shipped policy; 100 chained environment steps with episode resets. A mutated
copy of the kernel source (one index flipped) must fail the same checks."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("triton")
pytest.importorskip("torch")

from lram.kernels import interpret as ki  # noqa: E402
from lram.kernels import reference as ref  # noqa: E402

REF_POLICY = Path(__file__).resolve().parents[2] / "model" / "reference" / "pick-place-v3" / "model.safetensors"


def mlstm_err(inp, sk=None, strips=None):
    got = ki.mlstm(inp, sk, strips)
    want = ref.mlstm_cell_step(**inp, dtype=np.float64)
    return ki.compare(got, want, cols=strips * ki.kernels().MLSTM_BV if strips else None)


def slstm_err(inp, sk=None):
    return ki.compare(ki.slstm(inp, sk), ref.slstm_cell_step(**inp, dtype=np.float64))


@pytest.mark.parametrize("B,T,NH,DH,strips", [
    (3, 3, 2, 48, None),    # DH not a multiple of the row chunk or the strip; an invalid first token
    (16, 3, 1, 32, None),   # batch 16, the tiny preset's head
    (1, 3, 2, 64, None),    # batch 1, the small preset's head: all strips
    (1, 3, 1, 256, 2),      # 16M
    (1, 3, 1, 640, 1),      # 206M (the largest head): every row chunk, one strip
    (2, 1, 1, 384, 1),      # 48M, T = 1
    (1, 3, 1, 512, 1),      # 110M
])
def test_mlstm_matches_reference(B, T, NH, DH, strips):
    inp = ref.random_mlstm_inputs(B, T, NH, DH, seed=B + DH, valid_first=[0] + [1] * (B - 1))
    assert mlstm_err(inp, strips=strips) < ki.TOL


def test_mlstm_far_negative_forget_gate():
    inp = ref.random_mlstm_inputs(3, 3, 2, 32, seed=5, valid_first=[1, 0, 1])
    inp["fgate"][:, 1] = -40.0  # the state is forgotten at token 1: stabiliser jumps, nothing may overflow
    inp["fgate"][2, :, 0] = -40.0
    h, C, n, m = ki.mlstm(inp)
    assert np.isfinite(h).all() and np.isfinite(C).all()
    assert ki.compare([h, C, n, m], ref.mlstm_cell_step(**inp, dtype=np.float64)) < ki.TOL


def _trained():
    from safetensors.numpy import load_file

    return load_file(str(REF_POLICY))


def test_mlstm_with_trained_gates():
    """Gate pre-activations from the shipped policy's gate weights (block 0: NH 4, DH 64) on q, k, v."""
    w = _trained()
    pre = "encoder.layers.blocks.0.xlstm.mlstm_cell."
    Wi, bi, Wf, bf = (w[pre + x] for x in ("igate.weight", "igate.bias", "fgate.weight", "fgate.bias"))
    B, T, NH, DH = 3, 3, 4, 64
    inp = ref.random_mlstm_inputs(B, T, NH, DH, seed=7, valid_first=[0, 1, 1])
    qkv = np.concatenate([inp[x].reshape(B, T, NH * DH) for x in "qkv"], -1)
    inp["igate"] = (qkv @ Wi.T + bi).astype(np.float32)
    inp["fgate"] = (qkv @ Wf.T + bf).astype(np.float32)
    assert np.abs(Wi).max() > 0 and inp["fgate"].mean() > 2  # a trained forget gate: mostly remembering
    assert mlstm_err(inp) < ki.TOL


@pytest.mark.parametrize("B,T,NH,DH", [(3, 3, 2, 48), (16, 3, 1, 16), (1, 3, 1, 128), (1, 1, 1, 320)])
def test_slstm_matches_reference(B, T, NH, DH):
    inp = ref.random_slstm_inputs(B, T, NH, DH, seed=B + DH, valid_first=[0] + [1] * (B - 1))
    inp["wx"][0, -1, DH:2 * DH] = -40.0  # forget pre-activation of head 0 (gate-major layout), last token
    assert slstm_err(inp) < ki.TOL


def test_slstm_with_trained_recurrence():
    w = _trained()
    pre = "encoder.layers.blocks.1.xlstm.slstm_cell."
    R, b = w[pre + "_recurrent_kernel_"], w[pre + "_bias_"]
    NH, _, DH = R.shape
    inp = ref.random_slstm_inputs(3, 3, NH, DH, seed=8, valid_first=[1, 0, 1])
    inp["R"], inp["b"] = R, b
    assert slstm_err(inp) < ki.TOL


def test_chained_steps_with_resets():
    """100 environment steps; at episode starts a row's state is zeroed and its reward token skipped (what the
    plugin flavour's graph does); the kernel's state is fed back, the reference keeps its own float64 chain."""
    rng = np.random.default_rng(0)
    B, T, NH, DH = 2, 3, 1, 16  # small: the interpreter's cost is per launch and program, not per element
    H = 8
    mk = ref.random_mlstm_inputs(B, T, NH, DH, seed=1, steps_warm=False)
    sk_ = ref.random_slstm_inputs(B, T, 1, H, seed=1, steps_warm=False)
    ms = {x: mk[x] for x in ("C", "n", "m")}
    mw = {x: v.astype(np.float64) for x, v in ms.items()}
    ss = {x: sk_[x] for x in "hcnm"}
    sw = {x: v.astype(np.float64) for x, v in ss.items()}
    worst = 0.0
    for step in range(100):
        start = rng.random(B) < 0.05 if step else np.ones(B, bool)
        valid = np.ones((B, T), np.float32)
        valid[start, 0] = 0
        for st in (ms, mw, ss, sw):
            for x in st:
                st[x][start] = 0
        q, k, v = (rng.standard_normal((B, T, NH, DH)).astype(np.float32) for _ in range(3))
        ig = rng.standard_normal((B, T, NH)).astype(np.float32)
        fg = (rng.standard_normal((B, T, NH)) * 3 + 2).astype(np.float32)
        fg[rng.random((B, T, NH)) < 0.05] = -40.0
        h, *new = ki.mlstm(dict(q=q, k=k, v=v, igate=ig, fgate=fg, valid=valid, **ms))
        wh, *wnew = ref.mlstm_cell_step(q, k, v, ig, fg, valid, mw["C"], mw["n"], mw["m"], dtype=np.float64)
        worst = max(worst, ki.compare([h, *new], [wh, *wnew]))
        ms, mw = dict(zip(("C", "n", "m"), new)), dict(zip(("C", "n", "m"), wnew))
        wx = rng.standard_normal((B, T, 4 * H)).astype(np.float32)
        y, *snew = ki.slstm(dict(wx=wx, valid=valid, R=sk_["R"], b=sk_["b"], **ss))
        wy, *swnew = ref.slstm_cell_step(wx, valid, *(sw[x] for x in "hcnm"), sk_["R"], sk_["b"], dtype=np.float64)
        worst = max(worst, ki.compare([y, *snew], [wy, *swnew]))
        ss, sw = dict(zip("hcnm", snew)), dict(zip("hcnm", swnew))
    assert worst < ki.TOL, worst  # float32 chain against a float64 one over 100 steps (1.6e-6 measured)


# ---- mutation: the checks above must catch a wrong kernel ------------------------------------------------
def _mutant(tmp_path, old: str, new: str, name: str):
    src = Path(ki.kernels().__file__).read_text()
    assert src.count(old) == 1, f"mutation site {old!r} not unique"
    return ki.load_variant(src.replace(old, new), name, tmp_path)


def test_mutated_mlstm_kernel_fails(tmp_path):
    # C's columns and rows swapped on the load (C^T read): one index flipped
    mod = _mutant(tmp_path, "c = tl.load(C_in + cbase + rows[:, None] * DH + cols[None, :]",
                  "c = tl.load(C_in + cbase + cols[None, :] * DH + rows[:, None]", "mutant_mlstm")
    inp = ref.random_mlstm_inputs(3, 3, 2, 48, seed=51, valid_first=[0, 1, 1])
    assert mlstm_err(inp) < ki.TOL
    assert mlstm_err(inp, mod) > 100 * ki.TOL


def test_mutated_slstm_kernel_fails(tmp_path):
    # token t reads h of token t instead of t-1 (y[:, t] not yet written)
    mod = _mutant(tmp_path, "yprev = (brow * T + t - 1) * H", "yprev = (brow * T + t) * H", "mutant_slstm")
    inp = ref.random_slstm_inputs(3, 3, 2, 16, seed=52, valid_first=[0, 1, 1])
    assert slstm_err(inp) < ki.TOL
    assert slstm_err(inp, mod) > 100 * ki.TOL


def test_too_many_tokens_is_a_clear_error():
    import torch

    sk = ki.kernels()
    z = torch.zeros(1, sk.T_MAX + 1, 1, 16)
    with pytest.raises(sk.LaunchError, match="tokens per launch"):
        sk.run_mlstm(z, z, z, *([torch.zeros(1)] * 10))
