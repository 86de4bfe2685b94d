"""A GPT-2 style Decision Transformer: the Transformer baseline the LRAM is measured against.

Same token layout as the LRAM (state s_t, return-to-go R_t, reward r_t per timestep, no action tokens, one
shared ``embed_ln``, the action read at R_t with the same discretised head), GPT-2 blocks (pre-LayerNorm,
fused qkv projection, 4x GELU MLP, final LayerNorm), sizes from the spec table (``DT_SIZES``).

It is meant to be the *fast* Transformer, not a straw man:
- the KV cache is pre-allocated once (``init_cache``) as a ring of ``3 * window + 2`` token slots per layer;
  nothing grows by concatenation and nothing is copied when the window slides;
- one environment step appends its tokens (r_{t-1}, s_t, R_t; no r token at an episode start) in ONE call,
  so every weight is read once per environment step, as in the LRAM's exported chunk graph;
- attention runs over the filled slots only (a cache that is not full yet costs what its context costs).

Position information: none, as in the LRAM (the spec: no timestep / position embedding). With absolute
positions a sliding window would have to recompute the whole window every step; without them the cached
keys stay valid as the window slides, and the cached step is exactly the parallel form with a sliding window
of ``3 * window`` tokens (``forward``), which the tests check.

The batch runs in lockstep (all rows share one token count); ``first=True`` resets the whole cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lram.model.action_head import decode_logits
from lram.model.config import MAX_ACTION_DIMS, VOCAB, ConfigError, TaskSpec
from lram.model.tokens import TokenEmbedding

TOKENS_PER_STEP = 3
# name -> (layers, dim, heads); the spec's "Transformer baseline (GPT-2)" column, tiny matches the LRAM tiny.
DT_SIZES = {"tiny": (2, 64, 4), "small": (2, 128, 4), "16M": (4, 512, 8), "48M": (6, 768, 12),
            "110M": (8, 1024, 16), "206M": (10, 1280, 20)}


@dataclass(frozen=True)
class DTConfig:
    num_layers: int
    embedding_dim: int
    num_heads: int
    window_timesteps: int = 1600  # sliding attention window, in environment steps (3 tokens each)
    mlp_ratio: int = 4
    encoders: tuple = ("state",)

    def __post_init__(self):
        object.__setattr__(self, "encoders", tuple(self.encoders))
        if min(self.num_layers, self.embedding_dim, self.num_heads, self.window_timesteps) < 1:
            raise ConfigError("num_layers, embedding_dim, num_heads and window_timesteps must be positive")
        if self.embedding_dim % self.num_heads:
            raise ConfigError("embedding_dim must be divisible by num_heads")

    @property
    def window_tokens(self) -> int:
        return TOKENS_PER_STEP * self.window_timesteps

    @property
    def head_dim(self) -> int:
        return self.embedding_dim // self.num_heads


def dt_preset(name: str, **overrides) -> DTConfig:
    """``16M`` -> 4 layers x 512, 8 heads (the spec's GPT-2 baseline); the LRAM flavour suffix is ignored."""
    base = name.partition("-")[0]
    if base not in DT_SIZES:
        raise ConfigError(f"unknown Decision Transformer preset {name!r}; choose one of {', '.join(DT_SIZES)}")
    layers, dim, heads = DT_SIZES[base]
    return DTConfig(num_layers=layers, embedding_dim=dim, num_heads=heads, **overrides)


def kv_cache_bytes(config: DTConfig, timesteps: int, batch: int = 1, itemsize: int = 4) -> int:
    """Bytes of keys and values for ``timesteps`` of context (capped at the window): 2 x layers x 3T x dim."""
    tokens = TOKENS_PER_STEP * min(timesteps, config.window_timesteps)
    return 2 * config.num_layers * batch * tokens * config.embedding_dim * itemsize


class KVCache:
    """Pre-allocated ring of token slots: ``k[l], v[l]`` are [B, heads, capacity, head_dim] per layer;
    ``pos[slot]`` is the absolute token index held there (-1: empty). ``tokens`` counts tokens appended."""

    def __init__(self, config: DTConfig, batch: int, max_new: int = TOKENS_PER_STEP, dtype=torch.float32,
                 window_timesteps: int | None = None):
        self.window = TOKENS_PER_STEP * (window_timesteps or config.window_timesteps)
        self.capacity = self.window + max_new - 1  # the oldest key a new query still needs must survive
        self.max_new = max_new
        shape = (batch, config.num_heads, self.capacity, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in range(config.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in range(config.num_layers)]
        self.pos = torch.full((self.capacity,), -1, dtype=torch.long)
        self.tokens = 0

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    @property
    def filled(self) -> int:
        return min(self.tokens, self.capacity)

    def reset(self) -> None:
        self.pos.fill_(-1)
        self.tokens = 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    def tiled(self, batch: int) -> "KVCache":
        """A copy whose every row is row 0 of this cache (to reach a long context once, then benchmark a batch)."""
        out = KVCache.__new__(KVCache)
        out.window, out.capacity, out.max_new, out.tokens = self.window, self.capacity, self.max_new, self.tokens
        out.k = [t[:1].repeat(batch, 1, 1, 1) for t in self.k]
        out.v = [t[:1].repeat(batch, 1, 1, 1) for t in self.v]
        out.pos = self.pos.clone()
        return out


class GPT2Block(nn.Module):
    def __init__(self, config: DTConfig):
        super().__init__()
        H = config.embedding_dim
        self.heads, self.head_dim = config.num_heads, config.head_dim
        self.ln_1 = nn.LayerNorm(H)
        self.c_attn = nn.Linear(H, 3 * H)
        self.attn_proj = nn.Linear(H, H)
        self.ln_2 = nn.LayerNorm(H)
        self.c_fc = nn.Linear(H, config.mlp_ratio * H)
        self.mlp_proj = nn.Linear(config.mlp_ratio * H, H)

    def qkv(self, x):
        B, T, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v  # each [B, heads, T, head_dim]

    def finish(self, x, attn):
        B, _, T, _ = attn.shape
        x = x + self.attn_proj(attn.transpose(1, 2).reshape(B, T, -1))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class DecisionTransformer(TokenEmbedding):
    def __init__(self, config: DTConfig, task: TaskSpec):
        super().__init__(config, task)
        H = config.embedding_dim
        self.blocks = nn.ModuleList(GPT2Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(H)
        self.action_net = nn.Sequential(nn.Linear(H, VOCAB * MAX_ACTION_DIMS))

    def head(self, h):
        return self.action_net(self.ln_f(h)).unflatten(-1, (MAX_ACTION_DIMS, VOCAB))

    def decode(self, logits):
        return decode_logits(logits, self.task)

    # ---- parallel form ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, obs, rtg, rewards, cache: KVCache | None = None, query_chunk: int = 768):
        """obs [B, T, ...], rtg/rewards [B, T] raw -> logits [B, T, 8, 274] read at R_t; every token attends to
        the last ``3 * window`` tokens (the cache's window when one is given). With ``cache`` (empty, batch B)
        the keys and values of the last window are left in it so that ``step`` continues the sequence (the
        final r_{T-1} token is not consumed: the next ``step`` brings it as its ``prev_reward``)."""
        x = self.embed_sequence(obs, rtg, rewards)
        if cache is not None:
            if cache.tokens:
                raise ValueError("forward() fills an empty cache only; call cache.reset() first")
            x = x[:, :-1]
        N = x.shape[1]
        W = cache.window if cache is not None else self.config.window_tokens
        idx = torch.arange(N)
        for li, block in enumerate(self.blocks):
            q, k, v = block.qkv(x)
            outs = []
            for a in range(0, N, query_chunk):  # bounded memory for long prefills
                b = min(N, a + query_chunk)
                lo = max(0, a - W + 1)
                qi, ki = idx[a:b, None], idx[None, lo:b]
                mask = (ki <= qi) & (ki > qi - W)
                outs.append(F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, lo:b], v[:, :, lo:b], attn_mask=mask))
            if cache is not None:
                keep = min(N, cache.window)
                slots = torch.arange(N - keep, N) % cache.capacity
                cache.k[li][:, :, slots] = k[:, :, N - keep:]
                cache.v[li][:, :, slots] = v[:, :, N - keep:]
                cache.pos[slots] = torch.arange(N - keep, N)
            x = block.finish(x, torch.cat(outs, dim=2))
        if cache is not None:
            cache.tokens = N  # 3T - 1 tokens: R_t still sits at 1::3
        return self.head(x[:, 1::3])

    # ---- cached step -----------------------------------------------------------------------------------------
    def init_cache(self, batch: int, window_timesteps: int | None = None) -> KVCache:
        """An empty pre-allocated cache; ``window_timesteps`` overrides the config's window (the weights do not
        depend on it, so one model serves every context length)."""
        return KVCache(self.config, batch, window_timesteps=window_timesteps)

    @torch.no_grad()
    def step(self, obs, rtg, prev_reward, first, cache: KVCache):
        """One environment step for B robots in lockstep; updates ``cache`` in place. rtg, prev_reward: [B] raw;
        first: bool (or an all-equal [B] bool tensor) -> logits [B, 8, 274]."""
        if isinstance(first, torch.Tensor):
            if first.numel() and bool(first.any()) != bool(first.all()):
                raise ValueError("the Decision Transformer baseline runs its batch in lockstep: first must be all-equal")
            first = bool(first.any())
        if obs.shape[0] != cache.batch:
            raise ValueError(f"batch {obs.shape[0]} does not match the cache's {cache.batch}")
        s = self.embed_obs(obs)
        R = self.embed_scalar(self.embed_return, rtg)
        if first:
            cache.reset()
            x = torch.stack([s, R], dim=1)
        else:
            x = torch.stack([self.embed_scalar(self.embed_rewards, prev_reward), s, R], dim=1)
        h = self._append(self.embed_ln(x), cache)
        return self.head(h[:, -1])

    def _append(self, x, cache: KVCache):
        T = x.shape[1]
        if T > cache.max_new:
            raise ValueError(f"at most {cache.max_new} tokens per call, got {T}")
        j0 = cache.tokens
        qpos = torch.arange(j0, j0 + T)
        first_slot = j0 % cache.capacity
        contiguous = first_slot + T <= cache.capacity
        slots = None if contiguous else qpos % cache.capacity
        if contiguous:
            cache.pos[first_slot:first_slot + T] = qpos
        else:
            cache.pos[slots] = qpos
        n = min(j0 + T, cache.capacity)
        kpos = cache.pos[:n]
        mask = (kpos[None, :] <= qpos[:, None]) & (kpos[None, :] > qpos[:, None] - cache.window)  # [T, n]
        for li, block in enumerate(self.blocks):
            q, k, v = block.qkv(x)
            K, V = cache.k[li], cache.v[li]
            if contiguous:
                K[:, :, first_slot:first_slot + T] = k
                V[:, :, first_slot:first_slot + T] = v
            else:
                K.index_copy_(2, slots, k)
                V.index_copy_(2, slots, v)
            attn = F.scaled_dot_product_attention(q, K[:, :, :n], V[:, :, :n], attn_mask=mask)
            x = block.finish(x, attn)
        cache.tokens = j0 + T
        return x


def make_decision_transformer(name: str, task: TaskSpec, window_timesteps: int = 1600, seed: int = 0,
                              perturb: float = 0.0) -> DecisionTransformer:
    """A DT of preset ``name`` in eval mode; ``perturb`` adds Gaussian noise of that scale to every weight
    (benchmarks and tests use random weights: latency does not depend on training)."""
    torch.manual_seed(seed)
    cfg = dt_preset(name, window_timesteps=window_timesteps, encoders=(task.obs_kind,))
    model = DecisionTransformer(cfg, task).eval()
    if perturb:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(perturb * torch.randn(p.shape, generator=g))
    return model
