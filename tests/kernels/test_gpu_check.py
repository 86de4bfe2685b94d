"""gpu_check's CPU-side parts: argument parsing, --dry-run (reference checks, 'no GPU'), preset sizes."""
import json

import pytest

from lram.kernels import gpu_check as gc


def test_dry_run_writes_report(tmp_path):
    assert gc.main(["--out", str(tmp_path), "--dry-run"]) == 0
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rep["gpu"].startswith("no GPU") and rep["pass"] is True
    assert rep["reference_self_check"]["pass"]
    assert all(v < gc.TOL for v in rep["reference_self_check"]["fp32_vs_fp64_max_rel_err"].values())


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
