"""The Decision-Transformer baseline: the cached one-call step is exactly the sliding-window parallel form."""
from __future__ import annotations

import pytest
import torch

from lram.model.config import ConfigError
from lram.bench.transformer import (DT_SIZES, KVCache, dt_preset, kv_cache_bytes,
                                             make_decision_transformer)


def _episode(B, T, D=39, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((B, T, D), generator=g), 400 * torch.rand((B, T), generator=g),
            10 * torch.rand((B, T), generator=g))


def _step_all(dt, obs, rtg, rew, cache, start=0):
    out = []
    for t in range(start, obs.shape[1]):
        prev = rew[:, t - 1] if t else torch.zeros(obs.shape[0])
        out.append(dt.step(obs[:, t], rtg[:, t], prev, t == 0, cache))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("window", [1, 3, 5, 40])
def test_cached_steps_match_the_parallel_sliding_window(bench_task, window):
    dt = make_decision_transformer("tiny", bench_task, window_timesteps=window, perturb=0.1)
    obs, rtg, rew = _episode(2, 17)
    ref = dt(obs, rtg, rew)
    cache = dt.init_cache(2)
    got = _step_all(dt, obs, rtg, rew, cache)  # wraps the ring several times for small windows
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)
    assert cache.tokens == 3 * 17 - 1


def test_prefill_then_steps_continue_the_sequence(bench_task):
    dt = make_decision_transformer("tiny", bench_task, window_timesteps=4, perturb=0.1)
    obs, rtg, rew = _episode(3, 15, seed=1)
    ref = dt(obs, rtg, rew)
    cache = dt.init_cache(3)
    head = dt(obs[:, :9], rtg[:, :9], rew[:, :9], cache=cache)
    torch.testing.assert_close(head, ref[:, :9], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(_step_all(dt, obs, rtg, rew, cache, start=9), ref[:, 9:], atol=2e-5, rtol=1e-4)


def test_cache_window_override_and_tiling(bench_task):
    dt = make_decision_transformer("tiny", bench_task, window_timesteps=100, perturb=0.1)
    obs, rtg, rew = _episode(1, 12, seed=2)
    cache = dt.init_cache(1, window_timesteps=3)
    assert cache.window == 9 and cache.capacity == 11
    dt(obs[:, :8], rtg[:, :8], rew[:, :8], cache=cache)
    wide = cache.tiled(4)
    out1 = dt.step(obs[:, 8], rtg[:, 8], rew[:, 7], False, cache)
    out4 = dt.step(obs[:, 8].repeat(4, 1), rtg[:, 8].repeat(4), rew[:, 7].repeat(4), False, wide)
    torch.testing.assert_close(out4, out1.repeat(4, 1, 1))
    small = make_decision_transformer("tiny", bench_task, window_timesteps=3, perturb=0.1)
    small.load_state_dict(dt.state_dict())
    torch.testing.assert_close(out1, small(obs[:, :9], rtg[:, :9], rew[:, :9])[:, -1], atol=2e-5, rtol=1e-4)


def test_cache_is_preallocated_and_never_grows(bench_task):
    dt = make_decision_transformer("tiny", bench_task, window_timesteps=2, perturb=0.1)
    cache = dt.init_cache(1)
    ptrs = [t.data_ptr() for t in (*cache.k, *cache.v)]
    nbytes = cache.nbytes()
    obs, rtg, rew = _episode(1, 30)
    _step_all(dt, obs, rtg, rew, cache)
    assert [t.data_ptr() for t in (*cache.k, *cache.v)] == ptrs
    assert cache.nbytes() == nbytes == 2 * 2 * (3 * 2 + 2) * 64 * 4


def test_first_resets_and_lockstep_is_enforced(bench_task):
    dt = make_decision_transformer("tiny", bench_task, window_timesteps=8, perturb=0.1)
    obs, rtg, rew = _episode(2, 6)
    cache = dt.init_cache(2)
    a = _step_all(dt, obs, rtg, rew, cache)
    b = _step_all(dt, obs, rtg, rew, cache)  # step 0 has first=True: a fresh episode
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="lockstep"):
        dt.step(obs[:, 0], rtg[:, 0], rew[:, 0], torch.tensor([True, False]), cache)
    with pytest.raises(ValueError, match="batch"):
        dt.step(obs[:1, 0], rtg[:1, 0], rew[:1, 0], False, cache)


def test_sizes_follow_the_spec_and_kv_bytes(bench_task):
    assert DT_SIZES["16M"] == (4, 512, 8) and DT_SIZES["tiny"] == (2, 64, 4)
    cfg = dt_preset("16M-mlstm", window_timesteps=1600)
    assert (cfg.num_layers, cfg.embedding_dim, cfg.num_heads) == (4, 512, 8)
    # 2 (K, V) x 4 layers x 4800 tokens x 512 x 4 bytes
    assert kv_cache_bytes(cfg, 1600) == 2 * 4 * 4800 * 512 * 4
    assert kv_cache_bytes(cfg, 5000) == kv_cache_bytes(cfg, 1600)  # capped at the window
    assert kv_cache_bytes(cfg, 50, batch=16) == 16 * kv_cache_bytes(cfg, 50)
    assert isinstance(KVCache(cfg, 1, window_timesteps=50), KVCache)
    with pytest.raises(ConfigError):
        dt_preset("huge")
    dt = make_decision_transformer("16M", bench_task)
    assert 12e6 < dt.parameter_count() < 15e6  # the same size class as the 16M LRAM (14.2M)
