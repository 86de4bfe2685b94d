"""The Large Recurrent Action Model, top to bottom.

Tokens per environment step t: state s_t, return-to-go R_t, reward r_t (no action tokens). Each is embedded,
passed through one shared LayerNorm, then the xLSTM backbone; the action is read at R_t.

Two ways to run it that must agree:
- ``forward``: the parallel (training) form over [B, T] timesteps, sequence s_0 R_0 r_0 s_1 R_1 r_1 ...
- ``step``: one environment step through the package's recurrent ``step()``, three token calls
  (r_{t-1}, s_t, R_t) as the reference code runs it, with no r token at an episode start.
"""
from __future__ import annotations

import torch
from torch import nn

from .action_head import decode_logits
from .backbone import Backbone
from .config import MAX_ACTION_DIMS, VOCAB, LRAMConfig, TaskSpec
from .tokens import TokenEmbedding


class LRAM(TokenEmbedding):
    def __init__(self, config: LRAMConfig, task: TaskSpec):
        super().__init__(config, task)
        H = config.embedding_dim
        self.encoder = Backbone(config)
        for block in self.encoder.layers.blocks:
            if hasattr(block.xlstm, "mlstm_cell"):
                # The package's fixed causal mask caps the parallel form at 3 * context tokens; without it the
                # mask is built per call, so parity checks can run over whole episodes.
                block.xlstm.mlstm_cell.causal_mask = None
        self.action_net = nn.Sequential(nn.Linear(H, VOCAB * MAX_ACTION_DIMS))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.action_net(h).unflatten(-1, (MAX_ACTION_DIMS, VOCAB))

    # ---- parallel form ------------------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor, rtg: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """obs [B, T, ...], rtg [B, T], rewards [B, T] (raw units) -> logits [B, T, 8, 274] read at R_t."""
        h = self.encoder(self.embed_sequence(obs, rtg, rewards))
        return self.head(h[:, 1::3])

    # ---- recurrent form ----------------------------------------------------------------------------------
    def init_state(self, batch: int) -> dict:
        """Zero recurrent state in the xlstm package's own nested layout."""
        cfg, H = self.config, self.config.embedding_dim
        mlstm = [b for b, kind in zip(self.encoder.layers.blocks, cfg.block_types) if kind == "mlstm"]
        inner = mlstm[0].xlstm.config._inner_embedding_dim if mlstm else 2 * H
        NH, DH, K = cfg.num_heads, inner // cfg.num_heads, cfg.conv1d_kernel_size
        z = lambda *shape: torch.zeros(shape)  # noqa: E731
        state = {}
        for i, kind in enumerate(cfg.block_types):
            if kind == "mlstm":
                state[f"block_{i}"] = {"mlstm_state": (z(batch, NH, DH, DH), z(batch, NH, DH, 1), z(batch, NH, 1, 1)),
                                       "conv_state": (z(batch, K, inner),)}
            else:
                state[f"block_{i}"] = {"conv_state": (z(batch, K, H),), "slstm_state": z(4, batch, H)}
        return state

    @torch.no_grad()
    def step(self, obs, rtg, prev_reward, first, state):
        """One environment step for B robots. rtg, prev_reward: [B] raw; first: [B] bool.

        Rows with ``first`` start from a zero state and skip their reward token. Returns (logits [B, 8, 274],
        new state); the state passed in is not modified.
        """
        first = first.to(torch.bool)
        state = _map_state(lambda t, b: torch.where(_rows(first, t, b), torch.zeros_like(t), t), state)
        s = self.embed_ln(self.embed_obs(obs))
        R = self.embed_ln(self.embed_scalar(self.embed_return, rtg))
        r = self.embed_ln(self.embed_scalar(self.embed_rewards, prev_reward))
        stack = self.encoder.layers
        before = _map_state(lambda t, b: t.clone(), state)
        _, after = stack.step(r[:, None], _map_state(lambda t, b: t.clone(), state))
        state = _map_state2(lambda old, new, b: torch.where(_rows(first, old, b), old, new), before, after)
        _, state = stack.step(s[:, None], state)
        h, state = stack.step(R[:, None], state)
        return self.head(h[:, 0]), state

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        return decode_logits(logits, self.task)


def _batch_axis(key: str) -> int:
    return 1 if key == "slstm_state" else 0  # sLSTM keeps its (h, c, n, m) stack first


def _rows(mask: torch.Tensor, t: torch.Tensor, axis: int) -> torch.Tensor:
    shape = [1] * t.dim()
    shape[axis] = -1
    return mask.view(shape)


def _map_state(fn, state: dict) -> dict:
    out = {}
    for blk, parts in state.items():
        out[blk] = {}
        for key, val in parts.items():
            ax = _batch_axis(key)
            out[blk][key] = tuple(fn(t, ax) for t in val) if isinstance(val, tuple) else fn(val, ax)
    return out


def _map_state2(fn, a: dict, b: dict) -> dict:
    out = {}
    for blk, parts in a.items():
        out[blk] = {}
        for key, val in parts.items():
            ax = _batch_axis(key)
            other = b[blk][key]
            if isinstance(val, tuple):
                out[blk][key] = tuple(fn(x, y, ax) for x, y in zip(val, other))
            else:
                out[blk][key] = fn(val, other, ax)
    return out
