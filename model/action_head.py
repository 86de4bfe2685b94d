"""The shared discretised action head: 8 action dims x 274 tokens (18 discrete + 256 bins).

Continuous actions are mapped from the task's bounds to [-1, 1] and binned uniformly; discrete actions are
tokens 0..17. All dims are decoded in parallel by argmax (not autoregressively), by the task's
``action_decode`` rule:

- ``reference`` (the reference training code, checked against its outputs): per dim, argmax over ALL 274
  classes, bin = max(argmax - 18, 0), value at the bin's left edge (token * 2/256 - 1 on [-1, 1]). A dim whose
  winning class is one of the 18 discrete tokens therefore decodes to the low bound.
- ``bin_center`` (this project's trainer and evaluator): argmax over the 256 bin classes only, value at the
  bin's centre.

Discrete tasks take the argmax over the first ``action_n`` logits of dim 0 under both rules. Ties go to the
first maximal class (torch.argmax, numpy.argmax and ONNX ArgMax all pick the first).
"""
from __future__ import annotations

import torch

from .config import MAX_ACTION_DIMS, N_BINS, N_DISCRETE, VOCAB, TaskSpec

IGNORE = -100  # token for padded action dims (cross-entropy ignore_index)
_BOUNDS_TOL = 1e-6


class ActionOutOfBounds(ValueError):
    """An action lies outside the task's declared bounds."""


def encode_actions(actions: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """[..., d] actions (or [...] discrete indices) -> [..., 8] int64 tokens, padded dims = IGNORE."""
    lead = actions.shape[:-1] if task.action_kind == "continuous" else actions.shape
    tokens = torch.full((*lead, MAX_ACTION_DIMS), IGNORE, dtype=torch.long, device=actions.device)
    if task.action_kind == "discrete":
        a = actions.long()
        if ((a < 0) | (a >= task.action_n)).any():
            bad = a[(a < 0) | (a >= task.action_n)].flatten()[0].item()
            raise ActionOutOfBounds(f"discrete action {bad} outside 0..{task.action_n - 1}")
        tokens[..., 0] = a
        return tokens
    if actions.shape[-1] != task.action_dim:
        raise ValueError(f"actions have {actions.shape[-1]} dims, the task declares {task.action_dim}")
    low = torch.tensor(task.action_low, dtype=actions.dtype, device=actions.device)
    high = torch.tensor(task.action_high, dtype=actions.dtype, device=actions.device)
    outside = (actions < low - _BOUNDS_TOL) | (actions > high + _BOUNDS_TOL) | ~torch.isfinite(actions)
    if outside.any():
        idx = outside.nonzero()[0].tolist()
        raise ActionOutOfBounds(
            f"action {actions[tuple(idx)].item():.6g} at index {idx} lies outside the declared bounds "
            f"[{task.action_low[idx[-1]]}, {task.action_high[idx[-1]]}] of dim {idx[-1]}"
        )
    unit = (actions - low) / (high - low)  # [0, 1]
    bins = torch.clamp(torch.floor(unit * N_BINS), 0, N_BINS - 1).long()
    tokens[..., : task.action_dim] = bins + N_DISCRETE
    return tokens


def argmax_classes(task: TaskSpec) -> tuple[int, int]:
    """The class range [lo, hi) of the 274 that the argmax of each action dim runs over."""
    if task.action_kind == "discrete":
        return 0, task.action_n
    return (0, VOCAB) if task.action_decode == "reference" else (N_DISCRETE, VOCAB)


def decode_dims(task: TaskSpec) -> int:
    """How many of the 8 action dims are decoded."""
    return 1 if task.action_kind == "discrete" else task.action_dim


def bin_offset(task: TaskSpec) -> float:
    """Where in its bin a decoded value lies: 0 = left edge (reference), 0.5 = centre."""
    return 0.0 if task.action_decode == "reference" else 0.5


def winners_to_bins(winners: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """Argmax indices within ``argmax_classes(task)`` -> bin indices 0..255 (continuous tasks)."""
    if task.action_decode == "reference":  # classes 0..17 are the discrete tokens: they decode as bin 0
        return torch.clamp(winners - N_DISCRETE, min=0)
    return winners


def bins_to_actions(bins: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """Bin indices [..., d] -> actions within the task's bounds."""
    unit = (bins.to(torch.float32) + bin_offset(task)) / N_BINS
    low = torch.tensor(task.action_low, dtype=torch.float32, device=bins.device)
    high = torch.tensor(task.action_high, dtype=torch.float32, device=bins.device)
    return low + unit * (high - low)


def winners_to_actions(winners: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """Argmax indices [..., dims] (within ``argmax_classes``) -> actions [..., d] or discrete [...]."""
    if task.action_kind == "discrete":
        return winners[..., 0]
    return bins_to_actions(winners_to_bins(winners, task), task)


def decode_logits(logits: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """[..., 8, 274] logits -> actions [..., d] float32 (continuous) or [...] int64 (discrete)."""
    lo, hi = argmax_classes(task)
    return winners_to_actions(torch.argmax(logits[..., : decode_dims(task), lo:hi], dim=-1), task)


def action_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the discretised action tokens; ``mask`` [...] drops padded timesteps."""
    if mask is not None:
        tokens = torch.where(mask[..., None], tokens, torch.full_like(tokens, IGNORE))
    return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens.reshape(-1), ignore_index=IGNORE)
