"""The xLSTM backbone from the ``xlstm`` package, configured as the LRAM paper does."""
from __future__ import annotations

from torch import nn
from xlstm import (
    FeedForwardConfig,
    mLSTMBlockConfig,
    mLSTMLayerConfig,
    sLSTMBlockConfig,
    sLSTMLayerConfig,
    xLSTMBlockStack,
    xLSTMBlockStackConfig,
)

from .config import LRAMConfig


def stack_config(cfg: LRAMConfig) -> xLSTMBlockStackConfig:
    mlstm = mLSTMBlockConfig(
        mlstm=mLSTMLayerConfig(
            conv1d_kernel_size=cfg.conv1d_kernel_size,
            qkv_proj_blocksize=cfg.qkv_proj_blocksize,
            num_heads=cfg.num_heads,
            proj_factor=cfg.mlstm_proj_factor,
        )
    )
    slstm = None
    if cfg.slstm_at:
        slstm = sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(
                # The package defaults to the CUDA backend; the vanilla one runs everywhere and is what we export.
                backend="vanilla",
                num_heads=cfg.num_heads,
                conv1d_kernel_size=cfg.conv1d_kernel_size,
                bias_init="powerlaw_blockdependent",
            ),
            feedforward=FeedForwardConfig(proj_factor=cfg.ffn_proj_factor, act_fn="gelu"),
        )
    return xLSTMBlockStackConfig(
        mlstm_block=mlstm if len(cfg.slstm_at) < cfg.num_blocks else None,
        slstm_block=slstm,
        context_length=3 * cfg.context_timesteps,
        num_blocks=cfg.num_blocks,
        embedding_dim=cfg.embedding_dim,
        slstm_at=list(cfg.slstm_at),
    )


class Backbone(nn.Module):
    """Holds the stack as ``layers`` so parameter names match the reference checkpoints (``encoder.layers.*``)."""

    def __init__(self, cfg: LRAMConfig):
        super().__init__()
        self.layers = xLSTMBlockStack(stack_config(cfg))

    def forward(self, x):
        return self.layers(x)
