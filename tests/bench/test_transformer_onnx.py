"""The Decision Transformer on ONNX Runtime: its steps are the PyTorch cached steps, ring wrap-around included."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lram.bench.transformer import make_decision_transformer
from lram.bench.transformer_onnx import OrtDTStepper, export_dt_onnx


@pytest.mark.parametrize("window", [2, 6])
def test_ort_steps_equal_the_pytorch_cached_steps(tmp_path, bench_task, window):
    dt = make_decision_transformer("tiny", bench_task, window_timesteps=window, perturb=0.1)
    path = export_dt_onnx(dt, tmp_path / "dt.onnx")
    g = torch.Generator().manual_seed(0)
    B, T, D = 2, 14, bench_task.obs_shape[0]
    obs, rtg, rew = torch.randn(B, T, D, generator=g), 400 * torch.rand(B, T, generator=g), torch.rand(B, T, generator=g)
    cache = dt.init_cache(B)
    dt.step(obs[:, 0], rtg[:, 0], rew[:, 0], True, cache)  # the episode start (2 tokens) in PyTorch
    ort_dt = OrtDTStepper(path, cache, B)
    diffs = []
    for t in range(1, T):  # 13 steps: the ring of 3 * window + 2 slots wraps for both windows
        ort_dt.feeds.update(obs=obs[:, t].numpy(), rtg=rtg[:, t].numpy(), prev_reward=rew[:, t - 1].numpy())
        got = ort_dt.step()
        ref = dt.step(obs[:, t], rtg[:, t], rew[:, t - 1], False, cache)
        diffs.append(np.abs(got - ref.numpy()).max())
    assert max(diffs) < 1e-4 and ort_dt.tokens == cache.tokens
    # staying at one context (the bench's way) gives the same logits call after call
    a, b = ort_dt.step(advance=False), ort_dt.step(advance=False)
    np.testing.assert_array_equal(a, b)
