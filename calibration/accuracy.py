"""How far a reduced-precision graph is from its FP32 original, measured in the simulator, and the gate.

Three measurements, both graphs run by lram.verify's runners on ONNX Runtime (the comparison rules are
lram.verify.compare's), the reference (FP32) and the candidate each carrying their own recurrent state, the
return-to-go computed here as target - rewards so far:

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
from pathlib import Path

import numpy as np

from lram.verify.compare import decision_logits, state_error

from .record import HELDOUT_SEED0

DEFAULTS = {"tolerance_points": 5.0, "max_state_error": 0.5, "max_growth": 3.0, "min_agreement": None}


def _runner(path):
    from lram.verify.runners import GraphRunner

    return GraphRunner(path, "ort-cpu", threads=1)


def _step(runner, obs, rtg, reward, first):
    """One robot, one step: the runners take batches."""
    return runner.step(obs[None], np.array([rtg], np.float32), np.array([reward], np.float32), np.array([first]))


def _classes(out, task):
    return decision_logits(out.logits, task)[0].argmax(-1)  # [dims]: the class each action dim decides on


def _make_env(env_id):
    from lram.model.envs import make_env

    return make_env(env_id)[0]


def shadow_rollouts(ref, cand, env, episodes: int, seed0: int, target: float, bar=None,
                    position_bucket: int = 50) -> dict:
    """FP32 drives ``episodes`` episodes; the candidate is fed the same inputs. Agreement and drift by position."""
    task = ref.task
    same_all, same_dim, dist, successes, returns = [], [], [], [], []
    by_pos: dict[int, list] = {}
    for e in range(episodes):
        obs, reward, t, ret = env.reset(seed0 + e), 0.0, 0, 0.0
        ref.reset(1)
        cand.reset(1)
        while True:
            o1 = _step(ref, obs, target - ret, reward, t == 0)
            o2 = _step(cand, obs, target - ret, reward, t == 0)
            b1, b2 = _classes(o1, task), _classes(o2, task)
            same_all.append(bool((b1 == b2).all()))
            same_dim.append(float((b1 == b2).mean()))
            dist.append(float(np.abs(b1 - b2).mean()))
            d = float(np.abs(decision_logits(o1.logits, task) - decision_logits(o2.logits, task)).max())
            by_pos.setdefault(t // position_bucket, []).append(d)
            res = env.step(o1.action[0])
            obs, reward, t, ret = res.obs, res.reward, t + 1, ret + res.reward
            if bar is not None:
                bar.update(1)
            if res.done:
                successes.append(bool(res.success))
                returns.append(ret)
                break
    n = len(same_all)
    return {
        "episodes": episodes, "seeds": [seed0, seed0 + episodes - 1], "steps": n,
        "action_agreement": float(np.mean(same_all)) if n else None,
        "per_dim_agreement": float(np.mean(same_dim)) if n else None,
        "mean_bin_distance": float(np.mean(dist)) if n else None,
        "fp32_success_rate": float(np.mean(successes)) if successes else None,
        "fp32_mean_return": float(np.mean(returns)) if returns else None,
        "max_logit_diff_by_position": {f"{k * position_bucket}-{(k + 1) * position_bucket - 1}": float(max(v))
                                       for k, v in sorted(by_pos.items())},
    }


def drift_stream(ref, cand, env, steps: int, window: int, seed0: int, target_return: float, bar=None,
                 state_every: int = 10) -> dict:
    """``steps`` steps with the recurrent state never reset; per-window logit drift and state error."""
    task = ref.task
    windows, cur = [], None
    obs, reward, ep, ret = env.reset(seed0), 0.0, 0, 0.0
    nonfinite_at = None
    ref.reset(1)
    cand.reset(1)
    for t in range(steps):
        if t % window == 0:
            cur = {"start": t, "max_logit_diff": 0.0, "sum": 0.0, "n": 0, "state_error": 0.0}
            windows.append(cur)
        o1 = _step(ref, obs, target_return - ret, reward, t == 0)
        o2 = _step(cand, obs, target_return - ret, reward, t == 0)
        l1, l2 = decision_logits(o1.logits, task), decision_logits(o2.logits, task)
        if not np.isfinite(l2).all():
            nonfinite_at = t
            cur["max_logit_diff"] = float("inf")
            break
        d = np.abs(l1 - l2)
        cur["max_logit_diff"] = max(cur["max_logit_diff"], float(d.max()))
        cur["sum"] += float(d.mean())
        cur["n"] += 1
        if t % state_every == 0 or t == steps - 1:
            cur["state_error"] = max(cur["state_error"], state_error(o1.state, o2.state, ref.state_specs))
        res = env.step(o1.action[0])
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


def closed_loop(runner, env, episodes: int, seed0: int, target: float, bar=None) -> dict:
    """``runner`` drives ``episodes`` episodes on seeds seed0.. on its own."""
    results = []
    for e in range(episodes):
        obs, reward, t, ret = env.reset(seed0 + e), 0.0, 0, 0.0
        runner.reset(1)
        while True:
            a = _step(runner, obs, target - ret, reward, t == 0).action
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
    ref, cand = _runner(reference), _runner(candidate)
    try:
        man = ref.manifest
        if ref.config_hash != cand.config_hash:
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
        t0 = time.time()
        try:
            shadow = shadow_rollouts(ref, cand, env, rollouts, seed0, float(target), bar)
            ref_times, cand_times = list(ref.seconds), list(cand.seconds)
            cand_loop = closed_loop(cand, env, rollouts, seed0, float(target), bar)
            drift = drift_stream(ref, cand, env, drift_steps, window, seed0 + 50_000, float(target), bar)
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
