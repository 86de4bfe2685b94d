"""The token front shared by the LRAM and its Transformer baseline: per environment step t the tokens
s_t, R_t, r_t, each embedded, then one shared LayerNorm. Parameter names are the reference checkpoints'
(``embed_image``, ``embed_state``, ``embed_return``, ``embed_rewards``, ``embed_ln``)."""
from __future__ import annotations

import torch
from torch import nn

from .config import MAX_STATE_DIM, ConfigError, TaskSpec
from .encoders import ImpalaEncoder, pad_states


class TokenEmbedding(nn.Module):
    def __init__(self, config, task: TaskSpec):
        super().__init__()
        if task.obs_kind not in config.encoders:
            raise ConfigError(f"task observes {task.obs_kind!r} but the model has encoders {config.encoders}")
        self.config, self.task = config, task
        H = config.embedding_dim
        if "image" in config.encoders:
            self.embed_image = ImpalaEncoder(H)
        if "state" in config.encoders:
            self.embed_state = nn.Linear(MAX_STATE_DIM, H)
        self.embed_return = nn.Linear(1, H)
        self.embed_rewards = nn.Linear(1, H)
        self.embed_ln = nn.LayerNorm(H)

    def embed_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [N, D] (state) or [N, 64, 64, C] uint8 (image) -> [N, H]."""
        if self.task.obs_kind == "image":
            return self.embed_image(obs)
        return self.embed_state(pad_states(obs, MAX_STATE_DIM).to(self.embed_state.weight.dtype))

    def embed_scalar(self, layer: nn.Linear, raw: torch.Tensor) -> torch.Tensor:
        """Return-to-go or reward in raw units, divided by the task's reward scale."""
        return layer((raw.to(layer.weight.dtype) / self.task.reward_scale).unsqueeze(-1))

    def embed_sequence(self, obs: torch.Tensor, rtg: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """obs [B, T, ...], rtg / rewards [B, T] -> tokens [B, 3T, H]: s_0 R_0 r_0 s_1 R_1 r_1 ..."""
        B, T = rtg.shape
        s = self.embed_obs(obs.flatten(0, 1)).unflatten(0, (B, T))
        R = self.embed_scalar(self.embed_return, rtg)
        r = self.embed_scalar(self.embed_rewards, rewards)
        return self.embed_ln(torch.stack([s, R, r], dim=2).flatten(1, 2))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
