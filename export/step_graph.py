"""The single-step recurrent policy as one torch module: the thing that is exported.

One call = one environment step for B robots: zero the state of rows that start an episode, embed the
three tokens (r_{t-1}, s_t, R_t), run them through every block as one chunk (weights read once per step),
read the action at R_t and decode it to the task's action space inside the graph.
"""
from __future__ import annotations

import torch
from torch import nn

from lram.model.action_head import argmax_classes, bin_offset, decode_dims, winners_to_bins
from lram.model.config import MAX_ACTION_DIMS, N_BINS, VOCAB
from lram.model.lram import LRAM
from lram.runtime.manifest import StateSpec
from lram.runtime.native_xlstm import DOMAIN as NATIVE_DOMAIN

from .cells import MLSTMBlockStep, SLSTMBlockStep, norm
from .ort_cells import DOMAIN as ORT_DOMAIN
from .plugin_cells import NAMESPACE as PLUGIN_NAMESPACE

# Each flavour and the op domains its graph uses besides ONNX (the exporter checks them):
# standard: only ai.onnx ops (TensorRT, any runtime); ort: ONNX Runtime's contrib LinearAttention for the mLSTM
# memory (ONNX Runtime >= 1.30 only); native: one lram.native::MLSTMLayer node per mLSTM layer core and one
# SLSTMCell per sLSTM recurrence, run by compiled code between ONNX Runtime segments (backend_native.py);
# plugin: one lram::*CellStep node per cell for the TensorRT plugins
FLAVOUR_DOMAINS = {"standard": (), "ort": (ORT_DOMAIN,), "native": (NATIVE_DOMAIN,), "plugin": (PLUGIN_NAMESPACE,)}
FLAVOURS = tuple(FLAVOUR_DOMAINS)


# The block step for each kind of block in LRAMConfig.block_types: a new cell type is one entry here plus
# its class (its math and its state declaration) in cells.py.
BLOCK_STEPS = {"mlstm": MLSTMBlockStep, "slstm": SLSTMBlockStep}


def declared_state(blocks) -> list[StateSpec]:
    """The graph's state tensors, block by block in the order the blocks take them, from their declarations."""
    return [StateSpec(f"{i}.{p.part}", list(p.shape), "float32", block=i, cell=blk.kind, role=p.role,
                      stabiliser=None if p.stabiliser is None else f"{i}.{p.stabiliser}")
            for i, blk in enumerate(blocks) for p in blk.state_parts()]


class StepGraph(nn.Module):
    """forward(obs, rtg, prev_reward, first, *state_in) -> (action, logits, *state_out).

    ``mode="chunk"`` runs the three tokens through each block together; ``mode="sequential"`` runs the whole
    stack once per token (the naive export, kept to measure against)."""

    def __init__(self, model: LRAM, mode: str = "chunk", flavour: str = "standard"):
        super().__init__()
        if mode not in ("chunk", "sequential"):
            raise ValueError(f"mode must be 'chunk' or 'sequential', got {mode!r}")
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
        self.mode, self.flavour = mode, flavour
        swaps = {}  # block kind -> the block step's replaced parts (its cell, or its whole layer core)
        if flavour == "plugin":  # one lram::*CellStep node per cell update, matched by the TensorRT plugins
            from .plugin_cells import mlstm_cell_plugin, slstm_cell_plugin

            swaps = {"mlstm": {"cell": mlstm_cell_plugin}, "slstm": {"cell": slstm_cell_plugin}}
        elif flavour == "ort":  # the mLSTM memory update as ONNX Runtime's fused LinearAttention
            from .ort_cells import mlstm_cell_ort

            swaps = {"mlstm": {"cell": mlstm_cell_ort}}
        elif flavour == "native":  # the mLSTM layer core and the sLSTM recurrence as nodes for compiled code
            from .native_layers import mlstm_core_native, slstm_cell_native

            swaps = {"mlstm": {"core": mlstm_core_native}, "slstm": {"cell": slstm_cell_native}}
        self.task = task = model.task
        self.config = model.config
        self.parameters_count = model.parameter_count()
        p = lambda t: nn.Parameter(t.detach().clone(), requires_grad=False)  # noqa: E731
        if task.obs_kind == "state":
            # Zero-padding to 204 dims then Linear == using only the first D input columns.
            self.w_state = p(model.embed_state.weight[:, : task.obs_shape[0]].t())
            self.b_state = p(model.embed_state.bias)
        else:
            self.embed_image = model.embed_image
        self.w_ret, self.b_ret = p(model.embed_return.weight.t()), p(model.embed_return.bias)
        self.w_rew, self.b_rew = p(model.embed_rewards.weight.t()), p(model.embed_rewards.bias)
        self.ln = model.embed_ln
        self.blocks = nn.ModuleList(BLOCK_STEPS[kind](b, **swaps.get(kind, {}))
                                    for kind, b in zip(model.config.block_types, model.encoder.layers.blocks))
        self.post_norm_w = p(model.encoder.layers.post_blocks_norm.weight)
        self.w_head, self.b_head = p(model.action_net[0].weight.t()), p(model.action_net[0].bias)
        self.scale = float(task.reward_scale)
        if task.action_kind == "continuous":
            low = torch.tensor(task.action_low, dtype=torch.float32)
            high = torch.tensor(task.action_high, dtype=torch.float32)
            self.register_buffer("act_low", low + bin_offset(task) / N_BINS * (high - low))
            self.register_buffer("act_step", (high - low) / N_BINS)

    @property
    def state(self) -> list[StateSpec]:
        """Read from the blocks each time: a block swapped in after construction brings its own state."""
        return declared_state(self.blocks)

    def zero_state(self, batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, *spec.shape) for spec in self.state]

    def forward(self, obs, rtg, prev_reward, first, *state):
        keep = (~first).to(torch.float32)
        # Episode starts zero their state here, except the parts a cell resets inside its own math (the
        # mLSTM memories C and n, the bulk of the state, through its decay factors).
        folded = [p.reset_in_cell for blk in self.blocks for p in blk.state_parts()]
        state = [s if f else s * keep.reshape([-1] + [1] * (s.dim() - 1)) for s, f in zip(state, folded)]
        if self.task.obs_kind == "state":
            s_emb = torch.matmul(obs, self.w_state) + self.b_state
        else:
            s_emb = self.embed_image(obs)
        r_emb = torch.matmul(prev_reward / self.scale, self.w_rew) + self.b_rew
        R_emb = torch.matmul(rtg / self.scale, self.w_ret) + self.b_ret
        tokens = self.ln(torch.stack([r_emb, s_emb, R_emb], dim=1))  # [B, 3, H]
        if self.mode == "chunk":
            h, state = self._run_blocks(tokens, keep, state)
        else:
            ones = keep * 0.0 + 1.0  # not ones_like: tracing would bake the batch size in
            for t in range(3):
                h, state = self._run_blocks(tokens[:, t : t + 1], keep if t == 0 else ones, state)
        h = norm(h[:, -1], self.post_norm_w)
        logits = (torch.matmul(h, self.w_head) + self.b_head).unflatten(-1, (MAX_ACTION_DIMS, VOCAB))
        return (self._decode(logits), logits, *state)

    def _run_blocks(self, x, valid0, state):
        out, i = [], 0
        T = 3 if self.mode == "chunk" else 1
        for block in self.blocks:
            width = len(block.state_parts())
            x, new = block(x, valid0, T, *state[i : i + width])
            out += list(new)
            i += width
        return x, out

    def _decode(self, logits):
        # The rule of lram.model.action_head (the task's action_decode), with the bounds folded into two constants.
        lo, hi = argmax_classes(self.task)
        winners = torch.argmax(logits[:, : decode_dims(self.task), lo:hi], dim=-1)
        if self.task.action_kind == "discrete":
            return winners[:, 0]
        return self.act_low + winners_to_bins(winners, self.task).to(torch.float32) * self.act_step
