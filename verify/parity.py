"""``lram verify``: a candidate runner against a reference runner, stepped side by side over long runs.

Any two runners (lram.verify.runners): a graph against the checkpoint it came from (the checkpoint in
float64, which measures the graph's own error: two fp32 implementations differ by the sum of both errors, and
on a trained model, logits up to ~20, PyTorch fp32 is itself up to 1.9e-4 away from float64), a graph
against a graph (FP16 or INT8 against FP32, one flavour against another), an engine against its graph.

The default tolerance comes from the lower precision of the two sides. FP32: |dlogit| <= 1e-4 + 5e-5 x
max|logit| (about 4x PyTorch fp32's own worst, measured on the shipped pick-place policy over 8,000 steps).
FP16: 0.05 + 0.02 x max|logit| (FP16 has about three significant digits; measured 0.04-0.17 on logits up to
~18). INT8: no logit tolerance (a Q/DQ graph on a small policy is lossy by design; its gate is closed-loop
success in ``lram calibrate``): verify reports it and fails only on non-finite output or a diverging state.
When both sides expose their state under the same declared names (graph vs graph), the stabiliser-aligned
state error is measured too and fails past ``max_state_error``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from .compare import comparable_state, compare_step, state_error
from .feeds import AdversarialFeed, SimulatorFeed

FP32_ATOL, FP32_RTOL = 1e-4, 5e-5
# precision -> (atol, rtol); None: logits are reported, not gated
TOLERANCES = {"fp64": (FP32_ATOL, FP32_RTOL), "fp32": (FP32_ATOL, FP32_RTOL), "fp16": (0.05, 0.02), "int8": None,
              "int8-nbits": None, "int4-nbits": None, "bf16-state": None}
_ORDER = list(TOLERANCES)
MAX_STATE_ERROR = 0.5


class VerifyError(ValueError):
    """The two sides cannot be compared (different models, missing outputs)."""


@dataclass
class Window:
    phase: str
    start: int
    steps: int
    max_abs_logit_diff: float
    worst_excess: float | None  # max |dlogit| / allowed; <= 1 passes (None when the logits are not gated)
    action_agreement: float  # robot-steps whose every action dim matches (near-ties count as matching)
    exact_agreement: float  # the same without the near-tie allowance
    near_ties: int
    state_error: float | None  # max stabiliser-aligned relative state error, when both sides expose state


@dataclass
class VerifyReport:
    candidate: str
    reference: str
    steps: int
    robots: int
    episodes: int
    max_abs_logit_diff: float
    worst_excess: float | None
    action_agreement: float
    exact_agreement: float
    near_ties: int
    max_state_error: float | None
    atol: float | None
    rtol: float | None
    passed: bool
    failures: list = field(default_factory=list)
    windows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def default_tolerance(*precisions: str):
    worst = max(precisions, key=lambda p: _ORDER.index(p) if p in _ORDER else len(_ORDER))
    return TOLERANCES.get(worst)


def verify(candidate, reference, steps: int = 10_000, robots: int = 4, seed: int = 0, env_id: str | None = None,
           atol: float | None = None, rtol: float | None = None, window: int = 1000, progress: bool = False,
           max_state_error: float = MAX_STATE_ERROR, state_every: int = 10) -> VerifyReport:
    """Step ``candidate`` and ``reference`` (runners) on the same inputs; the reference's actions drive the
    simulator. Tolerances default by precision (see the module docstring)."""
    if candidate.config_hash and reference.config_hash and candidate.config_hash != reference.config_hash:
        raise VerifyError(f"{candidate.name} comes from another model than {reference.name} (config hash "
                          f"{candidate.config_hash} vs {reference.config_hash})")
    for side in (candidate, reference):
        if not getattr(side, "has_logits", True):
            raise VerifyError(f"{side.name} was exported without the logits output; re-export with logits to verify it")
    if atol is None and rtol is None:
        tol = default_tolerance(candidate.precision, reference.precision)
        atol, rtol = tol if tol is not None else (None, None)
    gated = atol is not None
    a, r = (atol, rtol or 0.0) if gated else (1e-4, 0.0)  # ungated: still report |dlogit| / 1e-4
    task = reference.task
    with_state = comparable_state(candidate.state_specs, reference.state_specs)
    candidate.reset(robots)
    reference.reset(robots)
    rng = np.random.default_rng(seed)
    env_id = env_id if env_id is not None else (task.name or None)
    notes: list[str] = []
    sources = []
    if env_id:
        try:
            sources.append(("simulator", steps // 2, SimulatorFeed(env_id, task, robots, seed)))
        except Exception as e:  # a missing simulator must not hide the adversarial half
            notes.append(f"simulator phase skipped: {e}")
    else:
        notes.append("simulator phase skipped: the model names no environment")
    sources.append(("adversarial", steps - sum(s[1] for s in sources), AdversarialFeed(task, robots, rng)))
    if not gated:
        notes.append(f"{candidate.precision} vs {reference.precision}: logits reported, not gated (closed-loop "
                     "success is the gate for this precision: lram calibrate)")

    windows: list[Window] = []
    t0, bar = 0, tqdm(total=steps, desc="verify", unit="step", disable=not progress)
    for phase, n, feed in sources:
        checks, serr = [], None
        for i in range(n):
            obs, rtg, prev_reward, first = feed.inputs()
            ref = reference.step(obs, rtg, prev_reward, first)
            cand = candidate.step(obs, rtg, prev_reward, first)
            feed.advance(ref.action)
            checks.append(compare_step(ref.logits, cand.logits, cand.action, task, a, r))
            if with_state and (i % state_every == 0 or i == n - 1):
                serr = max(serr or 0.0, state_error(ref.state, cand.state, reference.state_specs))
            if len(checks) == window or i == n - 1:
                windows.append(_window(phase, t0, checks, serr, gated))
                t0 += len(checks)
                checks, serr = [], None
            bar.update(1)
        notes += feed.notes()
    bar.close()
    return _report(candidate, reference, steps, robots, sources, windows, notes, atol if gated else None,
                   rtol if gated else None, max_state_error)


def _window(phase, start, checks, serr, gated: bool) -> Window:
    return Window(phase, start, len(checks), max(c.max_abs for c in checks),
                  max(c.excess for c in checks) if gated else None,
                  float(np.mean(np.concatenate([c.agree & c.decode_ok for c in checks]))),
                  float(np.mean(np.concatenate([c.exact for c in checks]))), sum(c.ties for c in checks), serr)


def _report(candidate, reference, steps, robots, sources, windows, notes, atol, rtol, max_state_error):
    total = max(sum(w.steps for w in windows), 1)
    mean = lambda key: sum(getattr(w, key) * w.steps for w in windows) / total  # noqa: E731
    max_abs = max((w.max_abs_logit_diff for w in windows), default=0.0)
    worst = max((w.worst_excess for w in windows if w.worst_excess is not None), default=0.0)
    errors = [w.state_error for w in windows if w.state_error is not None]
    max_serr = max(errors) if errors else None
    agreement = mean("action_agreement")
    failures = []
    if not np.isfinite(max_abs):
        failures.append("non-finite logits")
    if atol is not None:
        if worst > 1.0:
            failures.append(f"|dlogit| up to {worst:.2f}x the allowed {atol:g} + {rtol:g} x max|logit|")
        if agreement < 1.0:
            failures.append(f"actions differ beyond near-ties at {100 * (1 - agreement):.3f}% of robot-steps")
    if max_serr is not None and max_serr > max_state_error:
        failures.append(f"state diverged: relative state error {max_serr:.3g} > {max_state_error:g}")
    return VerifyReport(candidate=candidate.name, reference=reference.name, steps=steps, robots=robots,
                        episodes=sum(getattr(f, "episodes", 0) for _, _, f in sources), max_abs_logit_diff=max_abs,
                        worst_excess=worst if atol is not None else None, action_agreement=agreement,
                        exact_agreement=mean("exact_agreement"), near_ties=sum(w.near_ties for w in windows),
                        max_state_error=max_serr, atol=atol, rtol=rtol, passed=not failures, failures=failures,
                        windows=windows, notes=notes)
