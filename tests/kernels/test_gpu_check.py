"""gpu_check's CPU-side parts: argument parsing, --dry-run (reference checks, 'no GPU'), preset sizes."""
import json

import pytest

from lram.kernels import gpu_check as gc


def test_dry_run_end_to_end(tmp_path, aot_dir):
    """The interpreter kernels against the reference, the AOT artifacts' parameter lists against the launch
    argument lists, and a fused step of a small preset against the same step with reference cells."""
    kdir, r = aot_dir
    assert r.returncode == 0, r.stderr[-2000:]
    assert gc.main(["--out", str(tmp_path), "--dry-run", "--kernel-dir", str(kdir)]) == 0
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rep["gpu"].startswith("no GPU") and rep["pass"] is True and "timing" not in rep
    assert rep["reference_self_check"]["pass"]
    errs = rep["correctness"]["interpreter"]["max_rel_err"]
    assert len(errs) == 2 * (len(gc.DRY_MLSTM_CASES) + len(gc.DRY_SLSTM_CASES))
    assert all(0 < v < gc.TOL for v in errs.values())  # 0 would mean a vacuous case
    assert len(rep["artifacts"]["abi"]) == 6 and all(v["pass"] for v in rep["artifacts"]["abi"].values())
    assert 0 < rep["fused_step_vs_reference_cells"]["max_rel_err"] < 1e-4


def test_abi_check_catches_a_scratch_parameter():
    meta = {"kernel": "mlstm_step", "params": ["u64"] * 9 + ["u32"] * 4 + ["u64"] * 4}
    assert gc.abi_check({"m": meta})["m"]["pass"]
    assert not gc.abi_check({"m": dict(meta, params=meta["params"] + ["u64"])})["m"]["pass"]


def test_requires_out():
    with pytest.raises(SystemExit):
        gc.main(["--dry-run"])


def test_no_gpu_stack_is_reported_not_crashed(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    assert gc.main(["--out", str(tmp_path), "--batch", "1"]) == 1
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "cupy" in rep["gpu"] and rep["pass"] is False


def test_preset_sizes_match_xlstm_parameter_count():
    torch = pytest.importorskip("torch")
    pytest.importorskip("xlstm")
    from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig, sLSTMLayerConfig,
                       xLSTMBlockStack, xLSTMBlockStackConfig)

    p = gc.PRESET_16M
    cfg = xLSTMBlockStackConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=4)),
        slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=4, conv1d_kernel_size=4),
                                     feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")),
        context_length=150, num_blocks=8, embedding_dim=512, slstm_at=[1])
    n = sum(prm.numel() for prm in xLSTMBlockStack(cfg).parameters())
    assert gc.preset_sizes(p)["weights_floats"] == n
    assert gc.preset_sizes(p)["ffn"] == 704 and gc.preset_sizes(p)["DH"] == 256


def test_aot_cells_marshal_the_plugin_launch(monkeypatch):
    """The GPU path's launch, with CuPy and the CUDA stream faked: module file, entry point, grid / block /
    shared memory from the plugins' geometry, and 9 + 4 + 4 arguments (pointers, int32, pointers)."""
    import contextlib
    import types

    import numpy as np
    import torch

    calls = []

    class Fn:
        def __call__(self, grid, block, args, shared_mem=0):
            calls.append((grid, block, args, shared_mem))

    loaded = []
    cp = types.SimpleNamespace(
        RawModule=lambda path: types.SimpleNamespace(get_function=lambda e: loaded.append((path, e)) or Fn()),
        cuda=types.SimpleNamespace(ExternalStream=lambda h: contextlib.nullcontext()))
    stream = types.SimpleNamespace(cuda_stream=0)
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(current_stream=lambda: stream))
    metas = {"mlstm_step": dict(entry="lram_mlstm_step_f32", shared=256, num_warps=4),
             "slstm_step": dict(entry="lram_slstm_step_f32", shared=512, num_warps=4)}
    cells = gc.AotCells(cp, fake_torch, {"mlstm_step": "m.ptx", "slstm_step": "s.cubin"}, metas)
    assert sorted(loaded) == [("m.ptx", "lram_mlstm_step_f32"), ("s.cubin", "lram_slstm_step_f32")]
    B, T, NH, DH = 5, 3, 2, 40
    z = lambda *s: torch.zeros(*s)  # noqa: E731
    ins = [z(B, T, NH, DH)] * 3 + [z(B, T, NH)] * 2 + [z(B, T), z(B, NH, DH, DH), z(B, NH, DH, 1), z(B, NH, 1, 1)]
    cells.mlstm(*ins, z(B, T, NH, DH), z(B, NH, DH, DH), z(B, NH, DH, 1), z(B, NH, 1, 1))
    grid, block, args, shared = calls[-1]
    assert grid == (3, B * NH, 1) and block == (128, 1, 1) and shared == 256
    assert [type(a) for a in args] == [np.uint64] * 9 + [np.int32] * 4 + [np.uint64] * 4
    assert [int(a) for a in args[9:13]] == [B, T, NH, DH] and int(args[0]) == ins[0].data_ptr()
    H = NH * 16
    cells.slstm(z(B, T, 4 * H), z(B, T), *[z(B, H)] * 4, z(NH, 64, 16), z(4 * H), z(B, T, H), *[z(B, H)] * 4)
    grid, block, args, shared = calls[-1]
    assert grid == (NH, 2, 1) and shared == 512
    assert [type(a) for a in args] == [np.uint64] * 8 + [np.int32] * 4 + [np.uint64] * 5
    assert [int(a) for a in args[8:12]] == [B, T, NH, 16]
