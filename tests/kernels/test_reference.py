"""The NumPy reference of the fused step kernels against the xlstm package (torch, CPU)."""
import math

import numpy as np
import pytest

from lram.kernels import reference as ref

torch = pytest.importorskip("torch")
pytest.importorskip("xlstm")


def _torch_mlstm(inp):
    from xlstm.blocks.mlstm.backends import recurrent_step_stabilized_simple

    t = {k: torch.from_numpy(v.astype(np.float64)) for k, v in inp.items()}
    C, n, m = t["C"], t["n"], t["m"]
    B, T, NH, DH = t["q"].shape
    hs = []
    for s in range(T):
        q, k, v = (t[x][:, s].unsqueeze(2).clone() for x in "qkv")  # [B,NH,1,DH]
        ig = t["igate"][:, s][..., None, None]
        fg = t["fgate"][:, s][..., None, None]
        h, (C2, n2, m2) = recurrent_step_stabilized_simple(C, n, m, q, k, v, ig, fg)
        ok = t["valid"][:, s].bool()
        C = torch.where(ok[:, None, None, None], C2, C)
        n = torch.where(ok[:, None, None, None], n2, n)
        m = torch.where(ok[:, None, None, None], m2, m)
        if not bool(ok.all()):  # invalid token: output computed from the unchanged state
            h_inv, _ = recurrent_step_stabilized_simple(C, n, m, *(t[x][:, s].unsqueeze(2).clone() for x in "qkv"),
                                                        torch.full_like(ig, -math.inf), torch.full_like(fg, math.inf))
            h = torch.where(ok[:, None, None, None], h, h_inv)
        hs.append(h.reshape(B, NH, DH))
    return torch.stack(hs, 1).numpy(), C.numpy(), n.numpy(), m.numpy()


@pytest.mark.parametrize("warm", [True, False])
def test_mlstm_reference_matches_xlstm(warm):
    inp = ref.random_mlstm_inputs(3, 3, 4, 16, seed=1, steps_warm=warm, valid_first=[1, 0, 1])
    got = ref.mlstm_cell_step(**inp, dtype=np.float64)
    want = _torch_mlstm(inp)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert ref.rel_err(g, w) < 1e-12
    got32 = ref.mlstm_cell_step(**inp)
    assert got32[0].dtype == np.float32
    for g, w in zip(got32, want):
        assert ref.rel_err(g, w) < 1e-5


def test_mlstm_invalid_token_keeps_state():
    inp = ref.random_mlstm_inputs(2, 3, 2, 8, seed=2, valid_first=[0, 0])
    inp["valid"][:] = 0
    h, C, n, m = ref.mlstm_cell_step(**inp)
    np.testing.assert_array_equal(C, inp["C"])
    np.testing.assert_array_equal(n, inp["n"])
    np.testing.assert_array_equal(m, inp["m"])


def _torch_slstm(inp, NH):
    from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

    B, T, G = inp["wx"].shape
    H = G // 4
    cfg = sLSTMCellConfig(hidden_size=H, num_heads=NH, backend="vanilla", dtype="float32")
    cell = sLSTMCell(cfg).double()
    with torch.no_grad():
        cell._recurrent_kernel_.copy_(torch.from_numpy(inp["R"].astype(np.float64)))
        cell._bias_.copy_(torch.from_numpy(inp["b"].astype(np.float64)))
        assert torch.equal(cell._recurrent_kernel, cell._recurrent_kernel_)  # internal layout = vanilla's
        state = torch.from_numpy(np.stack([inp[x] for x in "hcnm"]).astype(np.float64))  # [4,B,H]
        ys = []
        for s in range(T):
            x = torch.from_numpy(inp["wx"][:, s:s + 1].astype(np.float64))  # [B,1,4H] (BSGNH)
            new = cell._impl_step(False, cell._permute_input(x), state)[:, 0]  # [4,B,H]
            ok = torch.from_numpy(inp["valid"][:, s] != 0)[None, :, None]
            state = torch.where(ok, new, state)
            ys.append(state[0])
    return (torch.stack(ys, 1).numpy(), *state.numpy())


@pytest.mark.parametrize("warm", [True, False])
def test_slstm_reference_matches_xlstm(warm):
    NH, DH = 4, 8
    inp = ref.random_slstm_inputs(3, 3, NH, DH, seed=3, steps_warm=warm, valid_first=[1, 0, 1] if warm else None)
    assert np.abs(inp["R"]).max() > 0
    got = ref.slstm_cell_step(**inp, dtype=np.float64)
    want = _torch_slstm(inp, NH)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert ref.rel_err(g, w) < 1e-12
    for g, w in zip(ref.slstm_cell_step(**inp), want):
        assert ref.rel_err(g, w) < 1e-5


def test_slstm_per_unit_n_zero_rule():
    # elementwise "m' = i~ where n == 0": a half-fresh state (some units n == 0) is handled per unit
    inp = ref.random_slstm_inputs(1, 1, 1, 4, seed=4)
    inp["n"][0, :2] = 0
    y, h, c, n, m = ref.slstm_cell_step(**inp, dtype=np.float64)
    raw = inp["wx"][0, 0].reshape(4, 4) + np.einsum("jd,d->j", inp["R"][0], inp["h"][0]).reshape(4, 4) + inp["b"].reshape(4, 4)
    np.testing.assert_allclose(m[0, :2], raw[0, :2], rtol=1e-6)
