"""The Decision-Transformer baseline on ONNX Runtime: the same runtime, threads and care as the exported LRAM.

One graph call = one environment step: the three tokens (r_{t-1}, s_t, R_t) are embedded and attend to the
KV cache and to each other; the graph returns the logits at R_t and the three new keys and values per layer.
The cache is a pre-allocated ring of token slots that lives with the caller (``OrtDTStepper``) and enters the
graph as an input; the caller writes the new keys and values into their slots (3 tokens x layers, a few KB).
Returning the whole cache as a graph output would copy it every step (ONNX Runtime has no in-place outputs
without IOBinding tricks), which no fast Transformer does; reading it once per step is the Transformer's
floor. Scores against the cache and against the new tokens are computed separately and joined only at the
softmax, so the cache is never concatenated (copied) either. The window mask over the ring (which slots hold
a key within the window of each new query) is a [3, capacity] additive input computed by the caller.

Same math as ``DecisionTransformer.step`` (checked in tests/bench), shapes static except batch and capacity.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .transformer import TOKENS_PER_STEP, DecisionTransformer, KVCache

NEG = -1e30


class DTStepGraph(nn.Module):
    """forward(obs [B, D], rtg [B], prev_reward [B], mask [3, cap], K_0, V_0, ..., K_L-1, V_L-1 [B, h, cap, hd])
    -> (logits [B, 8, 274], new_k [L, B, h, 3, hd], new_v [L, B, h, 3, hd])."""

    def __init__(self, dt: DecisionTransformer):
        super().__init__()
        self.dt = dt
        cfg = dt.config
        self.H, self.h, self.hd = cfg.embedding_dim, cfg.num_heads, cfg.head_dim
        T = TOKENS_PER_STEP
        self.register_buffer("causal", torch.triu(torch.full((T, T), NEG), diagonal=1))

    def forward(self, obs, rtg, prev_reward, mask, *kv):
        dt, T, H, h, hd = self.dt, TOKENS_PER_STEP, self.H, self.h, self.hd
        s = dt.embed_obs(obs)
        x = dt.embed_ln(torch.stack([dt.embed_scalar(dt.embed_rewards, prev_reward), s,
                                     dt.embed_scalar(dt.embed_return, rtg)], dim=1))
        scale = 1.0 / math.sqrt(hd)
        new_k, new_v = [], []
        for li, block in enumerate(dt.blocks):
            qkv = block.c_attn(block.ln_1(x)).reshape(-1, T, 3, h, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0] * scale, qkv[1], qkv[2]  # [B, h, 3, hd]
            K, V = kv[2 * li], kv[2 * li + 1]
            scores = torch.cat([torch.matmul(q, K.transpose(-1, -2)) + mask,
                                torch.matmul(q, k.transpose(-1, -2)) + self.causal], dim=-1)
            p = torch.softmax(scores, dim=-1)
            attn = torch.matmul(p[..., :-T], V) + torch.matmul(p[..., -T:], v)  # [B, h, 3, hd]
            x = x + block.attn_proj(attn.transpose(1, 2).reshape(-1, T, H))
            x = x + block.mlp_proj(F.gelu(block.c_fc(block.ln_2(x)), approximate="tanh"))
            new_k.append(k)
            new_v.append(v)
        return dt.head(x[:, -1]), torch.stack(new_k), torch.stack(new_v)


def export_dt_onnx(dt: DecisionTransformer, out: str | Path, opset: int = 17) -> Path:
    """Write the DT step graph (dynamic batch and cache capacity)."""
    out = Path(out)
    graph = DTStepGraph(dt.eval()).eval()
    L, h, hd = dt.config.num_layers, dt.config.num_heads, dt.config.head_dim
    B, cap = 2, 11
    D = dt.task.obs_shape[0]
    kv = [torch.randn(B, h, cap, hd) for _ in range(2 * L)]
    names = [f"{c}_{i}" for i in range(L) for c in "KV"]
    args = (torch.randn(B, D), torch.randn(B), torch.randn(B), torch.zeros(TOKENS_PER_STEP, cap), *kv)
    dynamic = {"obs": {0: "batch"}, "rtg": {0: "batch"}, "prev_reward": {0: "batch"}, "mask": {1: "cap"},
               **{n: {0: "batch", 2: "cap"} for n in names}, "logits": {0: "batch"}, "new_k": {1: "batch"},
               "new_v": {1: "batch"}}
    with torch.no_grad():
        torch.onnx.export(graph, args, str(out), input_names=["obs", "rtg", "prev_reward", "mask", *names],
                          output_names=["logits", "new_k", "new_v"], dynamic_axes=dynamic, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    return out


class OrtDTStepper:
    """The DT step graph on ONNX Runtime (one thread) with a ring KV cache in numpy, for ``batch`` robots in
    lockstep. ``from_cache`` starts from a PyTorch cache (e.g. one parallel prefill); ``step()`` appends one
    environment step; ``step(advance=False)`` writes the new keys and values but stays at this context (the
    bench's way to time many steps at one context length)."""

    def __init__(self, path: str | Path, cache: KVCache, batch: int, backend=None, seed: int = 0):
        from lram.runtime.backend_ort import OrtBackend

        self._owns_backend = backend is None
        self.backend = backend if backend is not None else OrtBackend(path, threads=1)
        self.session = self.backend.session
        L = len(cache.k)
        if cache.batch not in (1, batch):
            raise ValueError(f"the cache holds {cache.batch} robots; start from batch 1 (copied) or {batch}")
        tile = lambda t: np.array(np.broadcast_to(t.numpy(), (batch, *t.shape[1:])))  # a copy of its own  # noqa: E731
        self.K = [tile(t) for t in cache.k]
        self.V = [tile(t) for t in cache.v]
        self.names = [f"{c}_{i}" for i in range(L) for c in "KV"]
        self.pos = cache.pos.numpy().copy()
        self.tokens, self.window, self.capacity = cache.tokens, cache.window, cache.capacity
        rng = np.random.default_rng(seed)
        self.feeds = {"obs": rng.standard_normal((batch, self._obs_dim())).astype(np.float32),
                      "rtg": np.full(batch, 400.0, np.float32), "prev_reward": np.ones(batch, np.float32)}
        for i in range(L):
            self.feeds[f"K_{i}"], self.feeds[f"V_{i}"] = self.K[i], self.V[i]

    def _obs_dim(self) -> int:
        return next(i.shape[1] for i in self.session.get_inputs() if i.name == "obs")

    def step(self, advance: bool = True) -> np.ndarray:
        T = TOKENS_PER_STEP
        qpos = np.arange(self.tokens, self.tokens + T)
        kpos = self.pos[None, :]
        ok = (kpos >= 0) & (kpos <= qpos[:, None]) & (kpos > qpos[:, None] - self.window)
        self.feeds["mask"] = np.where(ok, 0.0, NEG).astype(np.float32)
        logits, new_k, new_v = self.session.run(None, self.feeds)
        slots = qpos % self.capacity
        s0 = int(slots[0])
        where = slice(s0, s0 + T) if s0 + T <= self.capacity else slots
        for i in range(len(self.K)):
            self.K[i][:, :, where] = new_k[i]
            self.V[i][:, :, where] = new_v[i]
        if advance:
            self.pos[slots] = qpos
            self.tokens += T
        return logits

    def close(self):
        if self._owns_backend:
            self.backend.close()


def exported_dt(dt: DecisionTransformer, workdir: str | Path | None = None) -> Path:
    """Export ``dt`` into ``workdir`` (a fresh temporary folder when None) and return the path."""
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="lram-dt-"))
    os.makedirs(workdir, exist_ok=True)
    return export_dt_onnx(dt, workdir / "dt_step.onnx")
