"""The two gates of ``lram bench ARTIFACT``: a baseline (ratios + machine-bound absolute figures) and a budget
(hard absolute limits for a dedicated target). The comparison itself is ``bench/gate.py``'s ``check``.

Baseline (``--write-baseline B.json``; ``--check B.json``)::

    {"schema": "lram-bench-baseline/1", "kind": "artifact",
     "artifact": {"name", "sha256", "backend", "flavour", "precision", ...}, "against": {...} | null,
     "machine": {"cpu", "cores", "arch", "gpu", "onnxruntime", "tensorrt", ...},
     "config": {"batches", "positions", "seconds", "hz", "margin", ...},
     "baseline_runs": K, "runs": n, "z": 4.0, "tolerance": <largest entry tolerance>,
     "ratios":   {"b1@100.step_over_floor": {"value", "better", "tolerance", "noise"}, ...},
     "absolute": {"b1@100.p99_ms": {"value", "better", "tolerance", "noise"}, ...},  (absent with --ratios-only)
     "ungated":  {"b1@100.step_over_floor": {"value", "noise", "would_need"}},       (too noisy here: not checked)
     "samples":  [{figure: value of one run}, ...]}                                 (what the noise came from)

Ratios (step / memory floor, artifact / reference artifact) are compared on any machine; ``absolute``
figures only on the machine named in ``machine`` (``bench/machine.py`` says what identity is): checking a
baseline with absolute figures elsewhere is refused unless ``--ratios-only`` is given.

How tolerance and the number of runs come from the measured noise: the baseline is written from K >= 2
runs (default 3) of the same measurement (the state advance is done once). For each gated figure the
run-to-run noise is sigma = std(log value over the K runs). A check that takes the median of n runs compares
two noisy medians, whose log difference has a spread of about sigma x sqrt(1/n + 1/K); the figure's tolerance
is exp(z x that) - 1 with z = 4 (a false alarm needs a 4-sigma excursion: the noise on a shared machine has
heavy tails and K is small), and at least MIN_TOLERANCE. n is the smallest count up to MAX_CHECK_RUNS for which
every gated figure's tolerance is <= TARGET_TOLERANCE (the smallest slow-down the gate is meant to catch);
when even MAX_CHECK_RUNS does not get there, the baseline keeps the larger tolerances and says so. A figure
that would need more than MAX_TOLERANCE (a gate that only catches a 2x slow-down) is left out of the gate and
listed under "ungated" with its noise, and n is chosen for the others: e.g. step / floor of a model whose
weights sit in the CPU cache, where the DRAM-bandwidth floor moves with the neighbours' memory traffic and the
step does not. Runs of one session share its load, so they underestimate the noise between sessions (measured here: a
p95 given 10 % moved 16 % one minute later): ``--write-baseline B.json --accumulate`` at other times adds runs
to B.json's samples and derives everything again from all of them. The check reads n from the baseline.
``--tolerance T`` replaces the derived tolerances with T
(and n with --runs).

Budget (``NAME.budget.json`` beside ``NAME.onnx`` / ``NAME.engine``, or ``--budget FILE``)::

    {"schema": "lram-latency-budget/1",
     "machine": {"cpu": "...", "cores": 8, "arch": "x86_64", "gpu": null},   (optional: the target it is for)
     "hz": 50,
     "budgets": [{"figure": "p99_ms", "batch": 4, "max_period_fraction": 0.6},
                 {"figure": "p50_ms", "batch": 1, "position": 1000, "max_ms": 2.0}]}

Each budget is one figure (p50_ms, p95_ms, p99_ms, max_ms, jitter_ms) at one batch size (every measured
position, or the one named), with a limit in ms or as a fraction of the period 1 / hz. Without --batch /
--positions, ``lram bench`` measures the batches and positions its budget names. A budget that names a
machine is refused on another one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import gate
from .artifact import ABSOLUTE, cell
from .machine import describe, differences

BUDGET_SCHEMA = "lram-latency-budget/1"
Z = 4.0
MIN_TOLERANCE = 0.10
TARGET_TOLERANCE = 0.25
MAX_CHECK_RUNS = 5
MAX_TOLERANCE = 1.0  # a figure that would need more even at MAX_CHECK_RUNS is recorded but not gated
BUDGET_FIGURES = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "jitter_ms")


class Refused(gate.GateError):
    """A comparison that would be meaningless (absolute numbers from another machine)."""


# ---- the gated values of a report --------------------------------------------------------------------------
def _values(cells: dict, absolute: bool) -> dict:
    out = {}
    for c, f in cells.items():
        for r, v in f["ratios"].items():
            out[f"{c}.{r}"] = v
        if absolute:
            for k in ABSOLUTE:
                out[f"{c}.{k}"] = f[k]
    return out


def current_values(report: dict) -> dict:
    return _values(report["figures"], True)


def noise_plan(per_run: list, baseline_runs: int) -> tuple[int, dict, dict]:
    """(check runs n, {key: tolerance}, {key: sigma}) from the per-run values (see the module doc)."""
    keys = per_run[0].keys()
    sigma = {k: float(np.std(np.log([r[k] for r in per_run]), ddof=1)) for k in keys}

    def tol(s, n):
        return max(MIN_TOLERANCE, math.expm1(Z * s * math.sqrt(1 / n + 1 / baseline_runs)))

    for n in range(1, MAX_CHECK_RUNS + 1):
        tols = {k: tol(s, n) for k, s in sigma.items()}
        if max(tols.values()) <= TARGET_TOLERANCE:
            break
    return n, tols, sigma


def make_baseline(report: dict, tolerance: float | None = None, ratios_only: bool = False,
                  previous: dict | None = None) -> dict:
    """``previous``: a baseline of the same artifact, machine and settings whose runs are kept (``--accumulate``):
    runs taken in one session share that session's load, so repeating the write at other times measures the
    noise between sessions too; the values are then medians over every kept run."""
    runs = [_values(r["cells"], not ratios_only) for r in report["runs"]]
    if previous is not None:
        _same_setup(previous, report, ratios_only)
        runs = previous["samples"] + runs
    K = len(runs)
    ungated = {}
    if tolerance is None:
        if K < 2:
            raise gate.GateError("a baseline needs at least 2 runs to measure its noise (--runs 3), "
                                 "or a fixed --tolerance")
        _, worst, sigma_all = noise_plan(runs, K)  # stops at MAX_CHECK_RUNS when the noisiest figure needs it
        ungated = {k: t for k, t in worst.items() if t > MAX_TOLERANCE}
        if len(ungated) == len(worst):
            raise gate.GateError("every figure is too noisy to gate on this machine (run-to-run noise "
                                 + ", ".join(f"{k}: {sigma_all[k]:.0%}" for k in sorted(sigma_all))
                                 + "); measure on a quieter machine, with longer --seconds, or give --tolerance")
        n, tols, sigma = noise_plan([{k: v for k, v in r.items() if k not in ungated} for r in runs], K)
    else:
        n, tols, sigma = report["config"]["runs"], {k: tolerance for k in runs[0]}, {}
    values = _values(report["figures"], not ratios_only)
    if previous is not None:
        values = {k: float(np.median([r[k] for r in runs])) for k in values}
    sections = {"ratios": {}, "absolute": {}}
    for k, v in sorted(values.items()):
        if k in ungated:
            continue
        entry = {"value": float(v), "better": "lower", "tolerance": round(tols[k], 4)}
        if k in sigma:
            entry["noise"] = round(sigma[k], 5)
        sections["absolute" if k.rsplit(".", 1)[1] in ABSOLUTE else "ratios"][k] = entry
    cfg = {k: report["config"][k] for k in ("batches", "positions", "backend", "threads", "warmup", "seconds",
                                             "min_rounds", "hz", "margin", "floor")}
    out = {"schema": gate.BASELINE_SCHEMA, "kind": "artifact", "artifact": report["artifact"],
           "against": report["against"], "machine": report["machine"], "config": cfg, "started": report["started"],
           "baseline_runs": K, "runs": n, "z": Z, "tolerance": max(tols.values()), "ratios": sections["ratios"]}
    if not ratios_only:
        out["absolute"] = sections["absolute"]
    out["samples"] = runs
    if ungated:
        out["ungated"] = {k: {"value": float(values[k]), "noise": round(sigma_all[k], 5), "would_need": round(t, 3)}
                          for k, t in sorted(ungated.items())}
    if tolerance is None and max(tols.values()) > TARGET_TOLERANCE:
        worst = max(tols, key=tols.get)
        out["note"] = (f"this machine is too noisy for a {TARGET_TOLERANCE:.0%} gate even with {n} runs: "
                       f"{worst} needs {tols[worst]:.0%}")
    return out


def _same_setup(previous: dict, report: dict, ratios_only: bool) -> None:
    if not previous.get("samples"):
        raise gate.GateError("the existing baseline keeps no runs to add to (write it again without --accumulate)")
    refuse_other_machine("the existing baseline", previous["machine"], report["machine"],
                         "Accumulate runs on the machine that wrote it.")
    keys = ("batches", "positions", "backend", "threads", "seconds", "floor")
    old, new = previous["config"], report["config"]
    norm = lambda v: list(v) if isinstance(v, (tuple, list)) else v  # noqa: E731  (JSON turns tuples into lists)
    diff = [k for k in keys if norm(old.get(k)) != norm(new[k])]
    if previous["artifact"].get("name") != report["artifact"]["name"]:
        diff.append("artifact")
    if ("absolute" in previous) == ratios_only or (previous.get("against") or {}).get("name") != (
            report.get("against") or {}).get("name"):
        diff.append("ratios-only / --against")
    if diff:
        raise gate.GateError(f"--accumulate: this run's {', '.join(diff)} differ from the existing baseline's")


def load_baseline(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise gate.GateError(f"cannot read the baseline {path}: {e}") from None
    if not isinstance(data, dict) or data.get("kind") != "artifact":
        raise gate.GateError(f"{path} is not an artifact baseline (written by 'lram bench ARTIFACT --write-baseline'); "
                             "a preset baseline is checked by 'lram bench --check' without an artifact")
    for name in ("ratios", "absolute"):
        if data.get(name):
            gate.validate_baseline(_section(data, name))
    if not data.get("ratios") and not data.get("absolute"):
        raise gate.GateError(f"{path} holds no figures to check")
    return data


def _section(data: dict, name: str) -> dict:
    return {"schema": gate.BASELINE_SCHEMA, "tolerance": data["tolerance"], "ratios": data[name]}


def refuse_other_machine(what: str, recorded: dict, here: dict, hint: str) -> None:
    diff = differences(recorded, here)
    if diff:
        raise Refused(f"refusing to compare absolute latencies across machines: {what} was measured on "
                      f"{describe(recorded)}, this is {describe(here)} ({'; '.join(diff)}). {hint}")


def check_baseline(report: dict, baseline: dict, ratios_only: bool = False) -> list:
    """[(title, GateResult)]: the ratios always, the absolute figures unless ``ratios_only``."""
    out = []
    values = current_values(report)
    if baseline.get("ratios"):
        out.append(("ratio", gate.check(values, _section(baseline, "ratios"))))
    if baseline.get("absolute") and not ratios_only:
        refuse_other_machine("the baseline", baseline["machine"], report["machine"], ABSOLUTE_HINT)
        out.append(("absolute figure", gate.check(values, _section(baseline, "absolute"))))
    if not out:
        raise gate.GateError("--ratios-only with a baseline that has no ratios: nothing to check")
    return out


ABSOLUTE_HINT = ("Ratios may be compared across machines: add --ratios-only, or write a baseline on this "
                 "machine with --write-baseline.")


def version_changes(baseline: dict, report: dict) -> list[str]:
    """Runtime versions and artifact hashes that changed since the baseline (what a regression may be due to)."""
    out = []
    for k in ("onnxruntime", "tensorrt", "python"):
        a, b = baseline["machine"].get(k), report["machine"].get(k)
        if a != b:
            out.append(f"{k} {a} -> {b}")
    if baseline["artifact"].get("sha256") != report["artifact"].get("sha256"):
        out.append(f"the artifact changed ({baseline['artifact']['name']} {baseline['artifact']['sha256'][:12]} -> "
                   f"{report['artifact']['name']} {report['artifact']['sha256'][:12]})")
    return out


# ---- budgets -----------------------------------------------------------------------------------------------
def budget_path(artifact: str | Path) -> Path:
    """``policy.onnx`` -> ``policy.budget.json``."""
    p = Path(artifact)
    return p.with_name(p.stem + ".budget.json")


def load_budget(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise gate.GateError(f"cannot read the budget {path}: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != BUDGET_SCHEMA:
        raise gate.GateError(f"{path} is not a latency budget (schema {BUDGET_SCHEMA!r} expected)")
    budgets = data.get("budgets")
    if not isinstance(budgets, list) or not budgets:
        raise gate.GateError(f"{path}: 'budgets' must be a non-empty list")
    for i, b in enumerate(budgets):
        where = f"{path}: budget {i + 1}"
        if not isinstance(b, dict) or b.get("figure") not in BUDGET_FIGURES:
            raise gate.GateError(f"{where}: 'figure' must be one of {', '.join(BUDGET_FIGURES)}")
        if not isinstance(b.get("batch"), int) or b["batch"] < 1:
            raise gate.GateError(f"{where}: 'batch' must be a positive integer")
        if "position" in b and (not isinstance(b["position"], int) or b["position"] < 0):
            raise gate.GateError(f"{where}: 'position' must be an integer >= 0")
        if ("max_ms" in b) == ("max_period_fraction" in b):
            raise gate.GateError(f"{where}: give exactly one of 'max_ms' or 'max_period_fraction'")
        limit = b.get("max_ms", b.get("max_period_fraction"))
        if not isinstance(limit, (int, float)) or limit <= 0:
            raise gate.GateError(f"{where}: the limit must be a positive number")
        if "max_period_fraction" in b and not (isinstance(data.get("hz"), (int, float)) and data["hz"] > 0):
            raise gate.GateError(f"{where}: 'max_period_fraction' needs a positive top-level 'hz'")
    return data


def budget_batches(budget: dict) -> tuple:
    return tuple(sorted({b["batch"] for b in budget["budgets"]}))


def make_budget(report: dict, hz: float, margin: float) -> dict:
    """p99 <= margin x period at every measured batch, for this machine."""
    ident = {k: report["machine"].get(k) for k in ("cpu", "cores", "arch", "gpu")}
    return {"schema": BUDGET_SCHEMA, "machine": ident, "hz": hz,
            "budgets": [{"figure": "p99_ms", "batch": B, "max_period_fraction": margin}
                        for B in report["config"]["batches"]]}


def check_budget(report: dict, budget: dict, where: str = "the budget") -> gate.GateResult:
    if budget.get("machine"):
        refuse_other_machine(where, budget["machine"], report["machine"],
                             "Budgets are absolute: write one for this machine (--write-budget) or gate on ratios "
                             "(--check with --ratios-only).")
    result = gate.GateResult()
    for b in budget["budgets"]:
        limit = b["max_ms"] if "max_ms" in b else b["max_period_fraction"] * 1e3 / budget["hz"]
        positions = [b["position"]] if "position" in b else report["config"]["positions"]
        for P in positions:
            key = f"{cell(b['batch'], P)}.{b['figure']}"
            f = report["figures"].get(cell(b["batch"], P))
            cur = None if f is None else float(f[b["figure"]])
            status = "not measured" if cur is None else "regressed" if cur > limit else "ok"
            result.rows.append(gate.GateRow(key, "lower", limit, cur, limit, 0.0, status))
    return result
