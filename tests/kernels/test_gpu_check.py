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
