"""How far a reduced-precision graph is from its FP32 original, measured in the simulator, and the gate.

Three measurements, all through the runtime (``Policy``: input checks, return bookkeeping, state slots), with
the reference (FP32) and the candidate graph each carrying their own recurrent state:

1. Held-out rollouts (seeds ``HELDOUT_SEED0``+, never used for calibration): FP32 drives the simulator; the
   candidate is fed the same observations / rewards / episode starts. Action agreement (all action dims in
   the same bin), per-dim agreement, mean bin distance, logit drift by episode position.
2. Drift stream: ``drift_steps`` (10,000) consecutive steps with the recurrent state NEVER reset (the
   simulator's episodes are chained; return-to-go restarts with each of them): the max / mean abs logit
   difference and the state's relative error per window. It diverges when anything is non-finite, when the
   state error passes ``max_state_error``, or when the drift grows (mean logit diff of the last two windows
   over the first two > ``max_growth``).
3. Closed loop: each graph drives its own rollouts on the same seeds; success rates compared.

The gate fails when the candidate's closed-loop success is more than ``tolerance_points`` below FP32's,
when the drift stream diverges, or (optional) when action agreement falls below ``min_agreement``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .record import HELDOUT_SEED0

DEFAULTS = {"tolerance_points": 5.0, "max_state_error": 0.5, "max_growth": 3.0, "min_agreement": None}


class _Capture:
    """Backend wrapper that keeps the last outputs (logits) and times each call."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.inputs, self.outputs = inner.name, inner.inputs, inner.outputs
        self.metadata = getattr(inner, "metadata", {})
        self.last = None
        self.times = []

    def run(self, feeds):
        t = time.perf_counter()
        out = self.inner.run(feeds)
        self.times.append(time.perf_counter() - t)
        self.last = out
        return out

    def close(self):
        self.inner.close()


def _policy(path, target_return):
    from lram.runtime.policy import Policy

    p = Policy.load(path, n_robots=1, backend="ort-cpu", threads=1, target_return=target_return)
    p.backend = _Capture(p.backend)
    return p


@dataclass
class _Pair:
    ref: object
    cand: object
    action: dict

    def logits(self, p):
        lg = p.backend.last["logits"][0]
        if self.action.get("kind") == "discrete":
            return lg[0, : self.action["n"]]
        # the classes the graph's decode rule compares: all 274 under the reference rule, else the 256 bin tokens
        return lg[: self.action["shape"][0], 0 if self.action.get("decode") == "reference" else 18:]

    def step(self, obs, reward, first, rtg=None):
        o = obs[None].astype(np.float32)
        r1 = self.ref.step_detailed(o, rtg, np.float32(reward), first)
        r2 = self.cand.step_detailed(o, rtg, np.float32(reward), first)
        return r1, r2


def _bins(action, spec):
    if spec.get("kind") == "discrete":
        return np.asarray(action).reshape(-1)
    lo, hi = np.asarray(spec["low"], np.float64), np.asarray(spec["high"], np.float64)
    # a decoded value sits at its bin's left edge (reference rule) or centre (bin_center): round back to the bin
    offset = 0.0 if spec.get("decode") == "reference" else 0.5
    unit = (np.asarray(action, np.float64).reshape(-1) - lo) / (hi - lo)
    return np.rint(unit * spec.get("bins", 256) - offset).astype(np.int64)


def _state_error(ref_state: dict, cand_state: dict) -> float:
    """max over state tensors of ||cand - ref|| / ||ref|| (inf when cand is non-finite). A norm ratio, not an
    elementwise one: single near-zero entries (an sLSTM h close to 0) would otherwise dominate.

    The stabiliser m is a free scale: (C, n, m) and (C e^d, n e^d, m - d) are the same memory (the outputs
    are invariant), and reduced precision may well settle on another m. So the memories (mLSTM C, n; sLSTM
    c, n) are compared after moving the candidate onto the reference's stabiliser, and m itself is not
    compared: only what the outputs can see counts as divergence."""
    def part(key):
        block, _, name = key.rpartition(".")
        return block, name

    worst = 0.0
    for k, r in ref_state.items():
        c = cand_state[k]
        if not np.isfinite(c).all():
            return float("inf")
        block, name = part(k)
        if name == "m":
            continue
        m_key = f"{block}.m"
        if name in ("C", "n", "c") and m_key in ref_state:
            shift = np.exp(np.clip(cand_state[m_key] - ref_state[m_key], -80.0, 80.0))
            c = c * shift.reshape(shift.shape + (1,) * (c.ndim - shift.ndim))
        scale = float(np.linalg.norm(r))
        err = float(np.linalg.norm(c - r))
        worst = max(worst, err / scale if scale > 1e-6 else err)
    return worst


def _make_env(env_id):
    from lram.model.envs import make_env

    return make_env(env_id)[0]


def shadow_rollouts(pair: _Pair, env, episodes: int, seed0: int, bar=None, position_bucket: int = 50) -> dict:
    """FP32 drives ``episodes`` episodes; the candidate is fed the same inputs. Agreement and drift by position."""
    same_all, same_dim, dist, rejected, successes, returns = [], [], [], 0, [], []
    by_pos: dict[int, list] = {}
    for e in range(episodes):
        obs, reward, t, ret = env.reset(seed0 + e), 0.0, 0, 0.0
        pair.ref.reset(0)
        pair.cand.reset(0)
        while True:
            r1, r2 = pair.step(obs, reward, t == 0)
            if r1.rejected or r2.rejected:
                rejected += 1
            else:
                b1, b2 = _bins(r1.action[0], pair.action), _bins(r2.action[0], pair.action)
                same_all.append(bool((b1 == b2).all()))
                same_dim.append(float((b1 == b2).mean()))
                dist.append(float(np.abs(b1 - b2).mean()))
                d = float(np.abs(pair.logits(pair.ref) - pair.logits(pair.cand)).max())
                by_pos.setdefault(t // position_bucket, []).append(d)
            res = env.step(r1.action[0])
            obs, reward, t, ret = res.obs, res.reward, t + 1, ret + res.reward
            if bar is not None:
                bar.update(1)
            if res.done:
                successes.append(bool(res.success))
                returns.append(ret)
                break
    n = len(same_all)
    return {
        "episodes": episodes, "seeds": [seed0, seed0 + episodes - 1], "steps": n, "rejected_steps": rejected,
        "action_agreement": float(np.mean(same_all)) if n else None,
        "per_dim_agreement": float(np.mean(same_dim)) if n else None,
        "mean_bin_distance": float(np.mean(dist)) if n else None,
        "fp32_success_rate": float(np.mean(successes)) if successes else None,
        "fp32_mean_return": float(np.mean(returns)) if returns else None,
        "max_logit_diff_by_position": {f"{k * position_bucket}-{(k + 1) * position_bucket - 1}": float(max(v))
                                       for k, v in sorted(by_pos.items())},
    }


def drift_stream(pair: _Pair, env, steps: int, window: int, seed0: int, target_return: float, bar=None,
                 state_every: int = 10) -> dict:
    """``steps`` steps with the recurrent state never reset; per-window logit drift and state error."""
    windows, cur = [], None
    obs, reward, ep, ret = env.reset(seed0), 0.0, 0, 0.0
    nonfinite_at = None
    for t in range(steps):
        if t % window == 0:
            cur = {"start": t, "max_logit_diff": 0.0, "sum": 0.0, "n": 0, "state_error": 0.0}
            windows.append(cur)
        rtg = np.array([[target_return - ret]], np.float32)
        r1, r2 = pair.step(obs, reward, t == 0, rtg=rtg)
        l1, l2 = pair.logits(pair.ref), pair.logits(pair.cand)
        if not np.isfinite(l2).all() or r2.rejected and not r1.rejected:
            nonfinite_at = t
            cur["max_logit_diff"] = float("inf")
            break
        d = np.abs(l1 - l2)
        cur["max_logit_diff"] = max(cur["max_logit_diff"], float(d.max()))
        cur["sum"] += float(d.mean())
        cur["n"] += 1
        if t % state_every == 0 or t == steps - 1:
            cur["state_error"] = max(cur["state_error"], _state_error(pair.ref.slots.state, pair.cand.slots.state))
        res = env.step(r1.action[0])
        obs, reward, ret = res.obs, res.reward, ret + res.reward
        if res.done:  # a new simulator episode; the model's state carries on
            ep += 1
            obs, ret = env.reset(seed0 + ep), 0.0
        if bar is not None:
            bar.update(1)
    for w in windows:
        w["mean_logit_diff"] = w.pop("sum") / max(1, w.pop("n"))
    means = [w["mean_logit_diff"] for w in windows]
    k = min(2, max(1, len(means) // 2))
    head, tail = float(np.mean(means[:k])), float(np.mean(means[-k:]))
    growth = tail / head if head > 1e-9 else (1.0 if tail <= 1e-9 else float("inf"))
    return {"steps": steps, "window": window, "seed0": seed0, "env_episodes": ep + 1, "windows": windows,
            "growth": growth, "max_state_error": max((w["state_error"] for w in windows), default=0.0),
            "max_logit_diff": max((w["max_logit_diff"] for w in windows), default=0.0),
            "nonfinite_at": nonfinite_at}


def closed_loop(policy, env, episodes: int, seed0: int, bar=None) -> dict:
    """``policy`` drives ``episodes`` episodes on seeds seed0.. on its own."""
    results = []
    for e in range(episodes):
        obs, reward, t, ret = env.reset(seed0 + e), 0.0, 0, 0.0
        policy.reset(0)
        while True:
            a = policy.step_detailed(obs[None].astype(np.float32), None, np.float32(reward), t == 0).action
            res = env.step(a[0])
            obs, reward, t, ret = res.obs, res.reward, t + 1, ret + res.reward
            if bar is not None:
                bar.update(1)
            if res.done:
                results.append({"seed": seed0 + e, "success": bool(res.success), "return": round(ret, 3), "length": t})
                break
    return {"episodes": episodes, "success_rate": float(np.mean([r["success"] for r in results])),
            "mean_return": float(np.mean([r["return"] for r in results])), "per_episode": results}


def compare(reference: str | Path, candidate: str | Path, env_id: str | None = None, rollouts: int = 20,
            drift_steps: int = 10_000, window: int = 1_000, seed0: int = HELDOUT_SEED0,
            target_return: float | None = None, progress: bool = False, thresholds: dict | None = None) -> dict:
    """The accuracy report of ``candidate`` against ``reference`` (see the module docstring), gate included."""
    ref, cand = _policy(reference, target_return), _policy(candidate, target_return)
    try:
        man = ref.manifest
        if man.model.get("config_hash") != cand.manifest.model.get("config_hash"):
            raise ValueError(f"{candidate} is not a conversion of {reference} (config_hash differs)")
        env_id = env_id or man.model.get("task", {}).get("name")
        if not env_id:
            raise ValueError("the model's manifest names no environment: pass env_id")
        target = target_return if target_return is not None else man.target_return
        if target is None:
            raise ValueError("the model has no target_return in its manifest: pass target_return")
        env = _make_env(env_id)
        max_steps = getattr(env, "max_steps", 500)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=2 * rollouts * max_steps + drift_steps, desc=f"check {Path(candidate).name}", unit="step")
        pair = _Pair(ref, cand, man.action)
        t0 = time.time()
        try:
            shadow = shadow_rollouts(pair, env, rollouts, seed0, bar)
            ref_times, cand_times = list(ref.backend.times), list(cand.backend.times)
            cand_loop = closed_loop(cand, env, rollouts, seed0, bar)
            drift = drift_stream(pair, env, drift_steps, window, seed0 + 50_000, float(target), bar)
        finally:
            if bar is not None:
                bar.close()
            env.close()
        fp32_success, fp32_return = shadow.pop("fp32_success_rate"), shadow.pop("fp32_mean_return")
        report = {
            "reference": str(reference), "candidate": str(candidate), "precision": cand.manifest.precision,
            "env": env_id, "target_return": float(target), "seconds": round(time.time() - t0, 1),
            "agreement": shadow, "drift": drift,
            "closed_loop": {"episodes": rollouts, "seeds": [seed0, seed0 + rollouts - 1],
                            "fp32_success_rate": fp32_success, "candidate_success_rate": cand_loop["success_rate"],
                            "fp32_mean_return": fp32_return, "candidate_mean_return": cand_loop["mean_return"],
                            "drop_points": 100.0 * (fp32_success - cand_loop["success_rate"]),
                            "candidate_per_episode": cand_loop["per_episode"]},
            "size_bytes": {"fp32": Path(reference).stat().st_size, "candidate": Path(candidate).stat().st_size},
            "step_ms_median": {"fp32": 1e3 * float(np.median(ref_times)) if ref_times else None,
                               "candidate": 1e3 * float(np.median(cand_times)) if cand_times else None},
        }
    finally:
        ref.close()
        cand.close()
    report["gate"] = gate(report, **(thresholds or {}))
    return report


def gate(report: dict, tolerance_points: float = DEFAULTS["tolerance_points"],
         max_state_error: float = DEFAULTS["max_state_error"], max_growth: float = DEFAULTS["max_growth"],
         min_agreement: float | None = DEFAULTS["min_agreement"]) -> dict:
    """Pass / fail with reasons. Pure: works on a report dict, so its logic is tested on its own."""
    failures = []
    cl = report["closed_loop"]
    drop = cl["drop_points"]
    if drop > tolerance_points + 1e-9:  # success rates are fractions: 75% - 70% is 5.000000000000001 points
        failures.append(f"closed-loop success dropped {drop:.1f} points (FP32 {100 * cl['fp32_success_rate']:.1f}%, "
                        f"{report.get('precision', 'candidate')} {100 * cl['candidate_success_rate']:.1f}%; "
                        f"tolerance {tolerance_points:g})")
    d = report["drift"]
    if d.get("nonfinite_at") is not None:
        failures.append(f"state diverged: non-finite output at drift step {d['nonfinite_at']}")
    if d["max_state_error"] > max_state_error:
        failures.append(f"state diverged: relative state error {d['max_state_error']:.3g} > {max_state_error:g}")
    if d["growth"] > max_growth:
        failures.append(f"drift grows: mean logit diff of the last windows is {d['growth']:.2f}x the first "
                        f"(limit {max_growth:g}x)")
    agr = report["agreement"].get("action_agreement")
    if min_agreement is not None and (agr is None or agr < min_agreement):
        failures.append(f"action agreement {agr} < {min_agreement:g}")
    return {"passed": not failures, "failures": failures,
            "thresholds": {"tolerance_points": tolerance_points, "max_state_error": max_state_error,
                           "max_growth": max_growth, "min_agreement": min_agreement}}


def format_report(r: dict) -> str:
    a, d, cl = r["agreement"], r["drift"], r["closed_loop"]
    mb = lambda b: f"{b / 1e6:.2f} MB"  # noqa: E731
    lines = [
        f"accuracy of {r['candidate']} ({r['precision']}) vs {r['reference']} (fp32) in {r['env']}",
        f"  size on disk:      {mb(r['size_bytes']['fp32'])} -> {mb(r['size_bytes']['candidate'])}",
        f"  step (ORT CPU):    {r['step_ms_median']['fp32']:.3f} ms -> {r['step_ms_median']['candidate']:.3f} ms (median, 1 thread)",
        f"  action agreement:  {100 * a['action_agreement']:.2f}% of {a['steps']} held-out steps (all dims same bin); "
        f"per dim {100 * a['per_dim_agreement']:.2f}%, mean bin distance {a['mean_bin_distance']:.3f}",
        f"  logit drift:       {d['steps']} steps, state never reset; max |dlogit| per {d['window']}-step window: "
        + ", ".join(f"{w['max_logit_diff']:.3g}" for w in d["windows"]),
        f"                     growth (last/first mean) {d['growth']:.2f}x; max relative state error {d['max_state_error']:.3g}",
        f"  closed loop:       success FP32 {100 * cl['fp32_success_rate']:.1f}% vs {100 * cl['candidate_success_rate']:.1f}% "
        f"on {cl['episodes']} episodes (seeds {cl['seeds'][0]}..{cl['seeds'][1]}); drop {cl['drop_points']:.1f} points",
        "  gate:              " + ("PASSED" if r["gate"]["passed"] else "FAILED: " + "; ".join(r["gate"]["failures"])),
    ]
    return "\n".join(lines)
