"""The native flavour: each xLSTM layer core one lram.native node, run by the compiled cores between ONNX Runtime
segments. Equal to PyTorch's cores and to the standard flavour (perturbed weights, resets in some rows, strongly
negative forget gates); the matrix memory never enters ONNX Runtime; clear errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from lram.export.cells import mlstm_layer_core, slstm_cell
from lram.export.onnx_export import export_onnx
from lram.runtime.backend import BackendUnavailable
from lram.runtime.backends import make_backend
from lram.runtime.graph_segments import split
from lram.runtime.manifest import Manifest, sidecar_path
from lram.runtime.native_xlstm import DOMAIN, load_kernels, mlstm_layer
from lram.runtime.native_xlstm import slstm_cell as native_slstm_cell


def _core_inputs(B, T, NH, DH, K, d, fbias, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: scale * torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    I = NH * DH
    NB = I // d
    b_if = r(2 * NH, scale=2.0)
    b_if[NH:] += fbias
    state = dict(C=r(B, NH, DH, DH), n=r(B, NH, DH, 1).abs(), m=r(B, NH, 1, 1, scale=5.0), conv=r(B, K, I))
    weights = dict(conv_w=r(K, I), conv_b=r(I), w_qk=r(2 * d, d, NB), wv=r(d, d, NB), w_if=r(3 * I, 2 * NH, scale=0.3),
                   b_if=b_if, outnorm_w=r(I, scale=0.2), skip=r(I))
    valid0 = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0][:B], dtype=torch.float64)  # rows 1 and 3 start an episode
    return r(B, T, 2 * I, scale=2.0), valid0, state, weights


@pytest.mark.parametrize("T", [3, 1])
@pytest.mark.parametrize("fbias", [0.0, -40.0])
@pytest.mark.parametrize("NH,DH", [(2, 16), (3, 4)])  # DH 16: the vector path with streaming stores; 4: scalar tails
def test_compiled_core_equals_pytorch(T, fbias, NH, DH):
    x_in, valid0, state, weights = _core_inputs(5, T, NH, DH, 4, 4, fbias, seed=T + NH)
    h_ref, s_ref = mlstm_layer_core(x_in, valid0, *state.values(), *weights.values(), T, NH, DH)
    f32 = lambda t: t.numpy().astype(np.float32)  # noqa: E731
    args = [f32(x_in), f32(valid0), *(f32(v) for v in state.values()), *(f32(w) for w in weights.values())]
    before = [a.copy() for a in args]
    out = mlstm_layer(load_kernels(), *args)
    for a, b in zip(args, before):
        np.testing.assert_array_equal(a, b)  # inputs untouched
    for got, want in zip(out, (h_ref, *s_ref)):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * max(1.0, float(np.abs(want).max())))
    assert np.abs(h_ref.numpy()).max() > 1e-2 and np.abs(s_ref[0].numpy()).max() > 1e-2  # not vacuous
    # an episode start (valid0 = 0) sees a zero carried-in memory, whatever the slot held (with one token, the
    # skipped one, the new memory is zero)
    assert (np.abs(out[1][1]).max() > 0) == (T > 1)
    wiped = [a.copy() for a in args]
    for i in (2, 3):  # C and n of row 1 set to garbage: row 1's results must not change
        wiped[i][1] = 1e3
    again = mlstm_layer(load_kernels(), *wiped)
    for a, b in zip(again, out):
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("T", [3, 1])
@pytest.mark.parametrize("fbias", [0.0, -40.0, 30.0])
@pytest.mark.parametrize("NH,DH", [(2, 16), (3, 5)])
def test_compiled_slstm_cell_equals_pytorch(T, fbias, NH, DH):
    g = torch.Generator().manual_seed(T + NH)
    r = lambda *s, scale=1.0: scale * torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    B, H = 5, NH * DH
    wx = r(B, T, 4 * H, scale=2.0)
    bias = r(4 * H)
    bias[H : 2 * H] += fbias  # the f gate (gate order i, f, z, o)
    n = r(B, H).abs() + 0.1
    n[0, :3] = 0.0  # fresh units: the stabiliser takes i as it is
    state = (r(B, H), r(B, H), n, r(B, H, scale=3.0))
    R = r(NH, 4 * DH, DH, scale=0.5)
    valid0 = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    y_ref, s_ref = slstm_cell(wx, valid0, *state, R, bias, NH, DH)
    f32 = lambda t: t.numpy().astype(np.float32)  # noqa: E731
    args = [f32(wx), f32(valid0), *(f32(x) for x in state), f32(R.transpose(1, 2).contiguous()), f32(bias)]
    before = [a.copy() for a in args]
    out = native_slstm_cell(load_kernels(), *args)
    for a, b in zip(args, before):
        np.testing.assert_array_equal(a, b)
    for got, want in zip(out, (y_ref, *s_ref)):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * max(1.0, float(np.abs(want).max())))
    assert np.abs(y_ref.numpy()).max() > 1e-2  # not vacuous
    if T == 1:  # row 1's only token is the skipped one: its state passes through unchanged
        for got, old in zip(out[1:], args[2:6]):
            np.testing.assert_array_equal(got[1], old[1])


def test_compiled_core_names_a_bad_shape():
    x_in, valid0, state, weights = _core_inputs(2, 3, 2, 8, 4, 4, 0.0, seed=0)
    args = [t.numpy().astype(np.float32) for t in (x_in, valid0, *state.values(), *weights.values())]
    args[7] = args[7][:-1]  # conv_b one short
    with pytest.raises(ValueError, match="conv_b has shape"):
        mlstm_layer(load_kernels(), *args)


def test_the_matrix_memory_never_enters_onnx_runtime(tmp_path, make):
    model = make("tiny", seed=3)
    native = export_onnx(model, tmp_path / "native.onnx", flavour="native")
    manifest = Manifest.from_json(sidecar_path(native).read_text())
    big = {n for s in manifest.state if s.cell == "mlstm" and s.role in ("memory", "normaliser") for n in (s.input, s.output)}
    stages = split(onnx.load(native), DOMAIN)
    segments = [st.segment for st in stages if st.segment is not None]
    assert sum(len(st.natives) for st in stages) == len(model.config.block_types)
    for seg in segments:
        assert not big & set(seg.inputs) and not big & set(seg.outputs), (seg.inputs, seg.outputs)
        assert all(n.domain != DOMAIN for n in seg.model.graph.node)
    fed = {i for st in stages for node in st.natives for i in node.inputs}
    assert {s.input for s in manifest.state if s.cell == "mlstm" and s.role == "memory"} <= fed


def test_missing_compiled_core_is_a_clear_error(tmp_path, make, monkeypatch):
    import builtins

    native = export_onnx(make("tiny", seed=1), tmp_path / "native.onnx", flavour="native")
    real_import = builtins.__import__

    def no_core(name, globals=None, locals=None, fromlist=(), level=0):
        if "_xlstm_native" in name or "_xlstm_native" in (fromlist or ()):
            raise ImportError("not built")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_core)
    with pytest.raises(BackendUnavailable, match="--flavour ort"):
        make_backend(native, "ort-cpu")


def test_cli_default_is_the_native_flavour_and_tensorrt_refuses_it(tmp_path, state_model):
    from click.testing import CliRunner

    from lram.cli.main import cli
    from lram.model.checkpoint import save_checkpoint

    ckpt = save_checkpoint(state_model, tmp_path / "ckpt")
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(ckpt), "-o", str(tmp_path / "p.onnx")])
    assert res.exit_code == 0 and "native flavour" in res.output, res.output
    assert Manifest.from_json(sidecar_path(tmp_path / "p.onnx").read_text()).flavour == "native"
    res = runner.invoke(cli, ["compile", "--check", str(tmp_path / "p.onnx")])
    assert res.exit_code != 0 and "--flavour standard" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["verify", str(tmp_path / "p.onnx"), "--against", str(ckpt), "--steps", "50"])
    assert res.exit_code == 0 and "PASS" in res.output, res.output


def _stochastic_bf16(x: np.ndarray) -> np.ndarray:
    """The bf16 rounding of runtime/xlstm_native.c, written again in numpy: a hash of each value's bits and its
    position in its head's C, added below the kept 16 bits, then truncated."""
    u = x.view(np.uint32).astype(np.uint64)
    pos = np.arange(x.shape[-1] * x.shape[-2], dtype=np.uint64).reshape(x.shape[-2:])  # i * DH + d
    m32 = np.uint64(0xFFFFFFFF)
    h = (((u ^ ((pos * np.uint64(0x9E3779B1)) & m32)) * np.uint64(0x85EBCA77)) & m32) >> np.uint64(16)
    return (((u + h) & m32) >> np.uint64(16)).astype(np.uint16)


@pytest.mark.parametrize("T", [3, 1])  # 3: the AVX2 path in registers; 1: widened and narrowed through a buffer
def test_bf16_memory_is_the_fp32_update_rounded_once(T):
    """The bf16-state path (lram calibrate --precision bf16-state): the compiled layer widens C, runs the same
    float32 update and rounds C' once (stochastically, with a dither that is a pure function of the value and its
    position); every other output is bit-identical to the float32 path."""
    import ml_dtypes

    x_in, valid0, state, weights = _core_inputs(5, T, 2, 16, 4, 4, 0.0, seed=11)
    args = [t.numpy().astype(np.float32) for t in (x_in, valid0, *state.values(), *weights.values())]
    c16 = args[2].astype(ml_dtypes.bfloat16)
    ref = mlstm_layer(load_kernels(), *args[:2], c16.astype(np.float32), *args[3:])
    got = mlstm_layer(load_kernels(), *args[:2], c16, *args[3:])
    assert got[1].dtype == c16.dtype
    np.testing.assert_array_equal(got[1].view(np.uint16), _stochastic_bf16(ref[1]))
    for a, b in zip((got[0], *got[2:]), (ref[0], *ref[2:])):
        np.testing.assert_array_equal(a, b)
    # unbiased: over many values the rounding error averages out (nearest-even would too, but a constant small
    # update below half a bf16 step would be lost every time; the dither keeps it on average)
    x = np.full((64, 64), 1.0 + 2.0 ** -10, np.float32)  # 1/8 of a bf16 step above 1
    mean = (_stochastic_bf16(x).astype(np.uint32) << 16).view(np.float32).mean()
    assert abs(mean - x[0, 0]) < 2.0 ** -12


def test_robots_split_over_threads_give_the_same_bits():
    """A backend with threads > 1 splits each compiled call's robots over a pool (the calls release the GIL):
    every output is bit-identical to one call, with an odd batch so the parts differ in size."""
    from concurrent.futures import ThreadPoolExecutor

    x_in, valid0, state, weights = _core_inputs(5, 3, 2, 16, 4, 4, -3.0, seed=5)
    args = [t.numpy().astype(np.float32) for t in (x_in, valid0, *state.values(), *weights.values())]
    with ThreadPoolExecutor(2) as pool:
        one, split = mlstm_layer(load_kernels(), *args), mlstm_layer(load_kernels(), *args, pool=pool)
        g = np.random.default_rng(0)
        s_args = [g.standard_normal((5, 3, 4 * 8)).astype(np.float32), args[1],
                  *(g.standard_normal((5, 8)).astype(np.float32) for _ in range(4)),
                  g.standard_normal((2, 4, 16)).astype(np.float32), g.standard_normal(32).astype(np.float32)]
        s_args[4] = np.abs(s_args[4]) + 0.1
        s_one, s_split = native_slstm_cell(load_kernels(), *s_args), native_slstm_cell(load_kernels(), *s_args, pool=pool)
    for a, b in zip((*one, *s_one), (*split, *s_split)):
        np.testing.assert_array_equal(a, b)
