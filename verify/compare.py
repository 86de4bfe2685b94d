"""How two runners' outputs are compared: logits, decided actions, near-ties and the recurrent state.

Pure functions on arrays, so the rules are tested on their own and shared by ``lram verify``, calibration's
accuracy report and anything else that puts two implementations side by side.

- Logits: |dlogit| <= atol + rtol * max|logit| of that robot-step (fp32 error scales with the magnitudes
  flowing through the network, not with each logit).
- Actions: each action dimension is an argmax over its decision classes (``decision_logits``). A candidate
  whose winning class differs from the reference's, where the reference separates the two by no more than
  twice the allowance, is a near-tie: reported, not failed. The candidate's own decoded action must also be
  what its own logits decode to (a graph decodes inside itself).
- State: a norm ratio per state tensor, with the stabiliser's free offset removed first (roles from the
  manifest): (memory e^d, normaliser e^d, stabiliser - d) is the same memory, and reduced precision may
  settle on another d.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lram.model.action_head import argmax_classes, decode_dims, winners_to_actions


@dataclass
class StepCheck:
    max_abs: float  # max |dlogit|
    excess: float  # max |dlogit| / allowed; <= 1 passes
    agree: np.ndarray  # [robots] bool: every action dim decided alike (near-ties count as alike)
    exact: np.ndarray  # [robots] bool: every action dim decided alike, no allowance
    ties: int
    decode_ok: np.ndarray  # [robots] bool: the candidate's action is what its logits decode to


def decision_logits(logits: np.ndarray, task) -> np.ndarray:
    """[B, 8, 274] -> [B, dims, classes]: the logits each action dimension's argmax runs over (the task's
    decode rule, model.action_head)."""
    lo, hi = argmax_classes(task)
    return logits[:, : decode_dims(task), lo:hi]


def compare_step(ref_logits: np.ndarray, cand_logits: np.ndarray, cand_action: np.ndarray, task, atol: float,
                 rtol: float) -> StepCheck:
    ref = np.asarray(ref_logits, np.float64)
    cand = np.asarray(cand_logits, np.float64)
    diff = np.abs(cand - ref)
    allowed = atol + rtol * np.abs(ref).max(axis=(1, 2), keepdims=True)  # per robot-step
    ref_d, cand_d = decision_logits(ref, task), decision_logits(cand, task)
    rb, cb = ref_d.argmax(-1), cand_d.argmax(-1)  # [robots, dims]
    gap = np.take_along_axis(ref_d, rb[..., None], -1)[..., 0] - np.take_along_axis(ref_d, cb[..., None], -1)[..., 0]
    tie = (rb != cb) & (gap <= 2 * allowed[:, :, 0])  # two logits each off by up to the allowance
    exact = np.all(rb == cb, axis=-1)
    agree = np.all((rb == cb) | tie, axis=-1)
    return StepCheck(float(diff.max()), float((diff / allowed).max()), agree, exact, int(tie.sum()),
                     _decoded_matches(cb, cand_action, task))


def _decoded_matches(classes: np.ndarray, action: np.ndarray, task) -> np.ndarray:
    expected = winners_to_actions(torch.from_numpy(classes), task).numpy()
    if task.action_kind == "discrete":
        return np.asarray(action).reshape(-1) == expected
    span = np.asarray(task.action_high, np.float64) - np.asarray(task.action_low, np.float64)
    return np.all(np.abs(np.asarray(action, np.float64) - expected) <= 1e-4 * span, axis=-1)


def state_error(ref: dict, cand: dict, specs) -> float:
    """max over state tensors of ||cand - ref|| / ||ref|| (inf when cand is non-finite), stabiliser aligned.

    A norm ratio, not an elementwise one: single near-zero entries (an sLSTM h close to 0) would otherwise
    dominate. Stabilisers themselves are not compared: only what the outputs can see counts as divergence."""
    worst = 0.0
    for spec in specs:
        c = np.asarray(cand[spec.name], np.float64)
        if not np.isfinite(c).all():
            return float("inf")
        if spec.role == "stabiliser":
            continue
        r = np.asarray(ref[spec.name], np.float64)
        if spec.stabiliser is not None:
            shift = np.exp(np.clip(np.asarray(cand[spec.stabiliser], np.float64)
                                   - np.asarray(ref[spec.stabiliser], np.float64), -80.0, 80.0))
            c = c * shift.reshape(shift.shape + (1,) * (c.ndim - shift.ndim))
        scale = float(np.linalg.norm(r))
        err = float(np.linalg.norm(c - r))
        worst = max(worst, err / scale if scale > 1e-6 else err)
    return worst


def comparable_state(a_specs, b_specs) -> bool:
    """Both sides expose their state under the same declared names and shapes."""
    if a_specs is None or b_specs is None:
        return False
    key = lambda specs: [(s.name, tuple(s.shape), s.role) for s in specs]  # noqa: E731
    return key(a_specs) == key(b_specs)
