"""lram bench: two modes, one gate (``lram.bench.gate``).

- ``lram bench ARTIFACT``: the latency of the user's own exported graph or compiled engine on a runtime
  backend (p50 / p95 / p99 / max, jitter, memory floor, robots per period); ``--write-baseline`` / ``--check``
  gate on a baseline (ratios anywhere, absolute figures on the same machine only) and a budget file beside the
  artifact gates absolute limits (``lram.bench.artifact_gate``).
- ``lram bench`` without an artifact: the project's preset bench (exported step vs PyTorch eager vs the memory
  floor vs a KV-cache Decision Transformer, random weights); ``--check`` gates on stored ratios."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click


def _ints(text: str | None):
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str | None):
    return None if text is None else tuple(x.strip() for x in text.split(",") if x.strip())


@click.command("bench")
@click.argument("artifact", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, help="CI mode (< 2 min): tiny + 16M at batch 1, contexts 50 and 800")
@click.option("--presets", help="comma-separated model presets (default: tiny,16M)")
@click.option("--batches", "--batch", "batches",
              help="comma-separated batch sizes (ARTIFACT: default 1, or the baseline's / budget's; presets: 1,16)")
@click.option("--positions", help="episode positions: the state is stepped there first (ARTIFACT: default 100; "
                                  "presets: 50,200,800,1600,10000)")
@click.option("--contexts", help="DT context lengths in timesteps (default: 50,200,800,1600)")
@click.option("--group-seconds", type=click.FloatRange(min=0.1), help="target seconds per interleaved group")
@click.option("--no-sequential", is_flag=True, help="skip the naive sequential export")
@click.option("--precisions", help="reduced precisions timed beside FP32 in the same rounds, per flavour they apply "
                                   "to (default: fp16,int8,int8-nbits,int4-nbits; 'none': FP32 only)")
@click.option("--robots", "robots", help="presets whose robots-at-50-Hz section runs (default: 16M; --quick: none; "
                                         "'none' to skip)")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="folder for report.json, report.md, PNGs (default: bench-out; with --from-report: none)")
@click.option("--from-report", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="measure nothing: use this report.json (re-render, --check it, or --write-baseline from it)")
@click.option("--no-plots", is_flag=True, help="skip the PNGs")
@click.option("--check", "baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="compare with this baseline (ARTIFACT: its ratios, and its absolute figures on the machine that "
                   "wrote it); exit 1 on a regression")
@click.option("--write-baseline", type=click.Path(dir_okay=False, path_type=Path),
              help="store this run's ratios (ARTIFACT: and absolute figures, unless --ratios-only) as a baseline")
@click.option("--tolerance", type=click.FloatRange(min=0.01),
              help="relative tolerance written into a new baseline (presets: default 0.35, the noisier ratios get "
                   "at least 0.5; ARTIFACT: default derived from the run-to-run noise)")
@click.option("--backend", type=click.Choice(["auto", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt"]), default="auto",
              show_default=True, help="ARTIFACT: the runtime backend that runs it")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="ARTIFACT: backend threads")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="ARTIFACT: untimed steps per batch/position before timing")
@click.option("--seconds", type=click.FloatRange(min=0.05),
              help="ARTIFACT: seconds of interleaved rounds per batch size and run (default 3, or the baseline's)")
@click.option("--runs", type=click.IntRange(min=1),
              help="ARTIFACT: repeat the timed rounds; figures are medians over runs (default 1; writing a "
                   "baseline: 3; checking: the baseline's)")
@click.option("--hz", type=click.FloatRange(min=0, min_open=True), help="ARTIFACT: control rate: robots per period")
@click.option("--margin", type=click.FloatRange(min=0, max=1, min_open=True), default=0.6, show_default=True,
              help="ARTIFACT: a step fits when its p99 <= MARGIN x period")
@click.option("--against", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ARTIFACT: a reference artifact (e.g. the FP32 graph) measured in the same rounds: ratio gate")
@click.option("--ratios-only", is_flag=True,
              help="ARTIFACT: write / check ratios only (portable across machines: shared CI)")
@click.option("--budget", type=click.Path(dir_okay=False, path_type=Path),
              help="ARTIFACT: absolute budget file (default: NAME.budget.json beside the artifact, when present)")
@click.option("--no-budget", is_flag=True, help="ARTIFACT: ignore NAME.budget.json")
@click.option("--write-budget", is_flag=True,
              help="ARTIFACT: write NAME.budget.json for this machine: p99 <= MARGIN x period (--hz) at each batch")
@click.option("--accumulate", is_flag=True,
              help="ARTIFACT, with --write-baseline: keep the runs already in that baseline and derive the noise "
                   "from all of them (repeat at other times to measure the noise between sessions)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="ARTIFACT: write the full report (every run's figures) to this file")
@click.option("--inject-slowdown", type=click.FloatRange(min=1.0), default=1.0, hidden=True,
              help="test only: every call of the LRAM graphs (ARTIFACT: of the artifact, not of --against) takes "
                   "this many times as long")
def bench(artifact, quick, presets, batches, positions, contexts, group_seconds, no_sequential, precisions, robots,
          out_dir, from_report,
          no_plots, baseline, write_baseline, tolerance, inject_slowdown, backend, threads, warmup, seconds, runs, hz,
          margin, against, ratios_only, budget, no_budget, write_budget, accumulate, json_out):
    """Benchmark one environment step: of ARTIFACT (an exported .onnx or a TensorRT engine) on a runtime
    backend, or without ARTIFACT the project's presets side by side (one thread, interleaved rounds)."""
    from lram.bench import gate as bench_gate, latency as bench_latency, report as bench_report

    ctx = click.get_current_context()
    artifact_only = ("backend", "threads", "warmup", "seconds", "runs", "hz", "margin", "against", "ratios_only",
                     "budget", "no_budget", "write_budget", "accumulate", "json_out")
    preset_only = ("quick", "presets", "contexts", "group_seconds", "no_sequential", "precisions", "robots",
                   "out_dir", "from_report", "no_plots")
    given = {p for p in ctx.params if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE}
    wrong = sorted(given & set(preset_only if artifact is not None else artifact_only))
    if wrong:
        opts = ", ".join("--" + w.replace("_", "-").replace("json-out", "json").replace("out-dir", "out") for w in wrong)
        raise click.UsageError(f"{opts}: only {'without' if artifact is not None else 'with'} an ARTIFACT")
    if artifact is not None:
        return bench_artifact(artifact, batches=_ints(batches), positions=_ints(positions), baseline=baseline,
                              write_baseline=write_baseline, tolerance=tolerance, slowdown=inject_slowdown,
                              backend=backend, threads=threads, warmup=warmup, seconds=seconds, runs=runs, hz=hz,
                              margin=margin, against=against, ratios_only=ratios_only, budget=budget,
                              no_budget=no_budget, write_budget=write_budget, accumulate=accumulate,
                              json_out=json_out)
    tolerance = 0.35 if tolerance is None else tolerance

    overrides = {k: v for k, v in {"presets": _names(presets), "batches": _ints(batches),
                                   "positions": _ints(positions), "contexts": _ints(contexts),
                                   "group_seconds": group_seconds}.items() if v is not None}
    if no_sequential:
        overrides["sequential"] = False
    for opt, text in (("precisions", precisions), ("robots", robots)):
        if text is not None:
            overrides[opt] = () if text.strip().lower() == "none" else _names(text)
    if inject_slowdown != 1.0:
        overrides["inject_slowdown"] = inject_slowdown
    base = None
    if baseline is not None:  # read it first: a malformed baseline should not cost a whole run
        try:
            if _baseline_kind(baseline) == "artifact":
                raise bench_gate.GateError(f"{baseline} is the baseline of an artifact: lram bench ARTIFACT --check {baseline}")
            base = bench_gate.load_baseline(baseline)
        except bench_gate.GateError as e:
            raise click.ClickException(str(e)) from None
    try:
        cfg = (bench_latency.quick_config if quick else bench_latency.full_config)(**overrides)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    command = "lram bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"] else ""
    if from_report is not None:
        try:
            report = json.loads(from_report.read_text())
            if report.get("schema") != bench_latency.SCHEMA:
                raise ValueError(f"schema {report.get('schema')!r}, expected {bench_latency.SCHEMA!r}")
        except ValueError as e:
            raise click.ClickException(f"{from_report} is not a bench report: {e}") from None
    else:
        report = bench_latency.run_bench(cfg, progress=lambda msg: click.echo(msg, err=True), command=command)
        out_dir = out_dir or Path("bench-out")
    click.echo(bench_report.markdown(report))
    if out_dir is not None:
        paths = bench_report.write_outputs(report, out_dir, with_plots=not no_plots)
        click.echo(f"wrote {paths['json']}, {paths['markdown']}"
                   + (f" and {len(paths['plots'])} plots" if "plots" in paths else ""))
    if write_baseline is not None:
        data = bench_gate.make_baseline(report["ratios"], report["directions"], tolerance,
                                        tolerances=bench_gate.noisy_tolerances(tolerance),
                                        exclude=bench_gate.UNGATED,
                                        note=f"from the {report['mode']} run: {report.get('command') or 'run_bench'}"
                                             f" ({report.get('started', '')})")
        write_baseline.parent.mkdir(parents=True, exist_ok=True)
        write_baseline.write_text(json.dumps(data, indent=1) + "\n")
        click.echo(f"wrote baseline {write_baseline} ({len(data['ratios'])} ratios, tolerance {tolerance})")
    if base is not None:
        result = bench_gate.check(report["ratios"], base)
        click.echo(result.format())
        if out_dir is not None:
            (out_dir / "gate.txt").write_text(result.format() + "\n")
        if not result.ok:
            sys.exit(1)


def _baseline_kind(path: Path):
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # load_baseline says what is wrong with it
    return data.get("kind") if isinstance(data, dict) else None


class Refused(click.ClickException):
    """Exit 2: the comparison asked for is meaningless (absolute numbers from another machine)."""

    exit_code = 2


def bench_artifact(artifact: Path, *, batches, positions, baseline, write_baseline, tolerance, slowdown, backend,
                   threads, warmup, seconds, runs, hz, margin, against, ratios_only, budget, no_budget, write_budget,
                   accumulate, json_out):
    """``lram bench ARTIFACT``: measure, print, write what was asked, gate; exit 1 naming each failed figure."""
    from lram.bench import artifact as bench_artifact_mod, artifact_gate, gate as bench_gate
    from lram.bench.machine import machine_info
    from lram.runtime.backends import BackendUnavailable
    from lram.runtime.manifest import ManifestError

    if write_budget and not hz:
        raise click.UsageError("--write-budget needs --hz (the budget is a fraction of the period)")
    if accumulate and (write_baseline is None or not write_baseline.is_file()):
        raise click.UsageError("--accumulate adds to an existing baseline: give --write-baseline B.json of one")
    base = bud = previous = None
    budget_file = budget if budget is not None else None if no_budget else artifact_gate.budget_path(artifact)
    if budget is not None and not write_budget and not budget.is_file():
        raise click.UsageError(f"--budget {budget}: no such file")
    try:
        if baseline is not None:
            base = artifact_gate.load_baseline(baseline)
        if accumulate:
            previous = artifact_gate.load_baseline(write_baseline)
            if not previous.get("samples"):
                raise bench_gate.GateError(f"{write_baseline} keeps no runs to add to: write it again without "
                                           "--accumulate")
        if budget_file is not None and budget_file.is_file() and not write_budget:
            bud = artifact_gate.load_budget(budget_file)
        here = machine_info()  # refuse before measuring where the hardware already differs
        if base is not None and base.get("absolute") and not ratios_only:
            artifact_gate.refuse_other_machine(f"the baseline {baseline}", base["machine"], here,
                                               artifact_gate.ABSOLUTE_HINT)
        if bud is not None and bud.get("machine"):
            artifact_gate.refuse_other_machine(f"the budget {budget_file}", bud["machine"], here,
                                               "Budgets are absolute: write one on this machine (--write-budget).")
    except artifact_gate.Refused as e:
        raise Refused(str(e)) from None
    except bench_gate.GateError as e:
        raise click.ClickException(str(e)) from None

    # what to measure: the command line, else what the baseline / budget was written for
    cfg0 = base["config"] if base is not None else previous["config"] if previous is not None else {}
    recorded_from = base if base is not None else previous
    if against is None and recorded_from is not None and recorded_from.get("against"):
        recorded = Path(recorded_from["against"]["path"])
        if not recorded.is_file():
            raise click.UsageError(f"the baseline compares with the reference {recorded}, which is not here: "
                                   "pass it with --against")
        against = recorded
    budget_b = artifact_gate.budget_batches(bud) if bud is not None else ()
    budget_p = tuple(b["position"] for b in bud["budgets"] if "position" in b) if bud is not None else ()
    if runs is None:
        runs = base["runs"] if base is not None else 3 if write_baseline is not None and tolerance is None else 1
    if previous is not None:
        ratios_only = "absolute" not in previous
    try:
        cfg = bench_artifact_mod.ArtifactConfig(
            batches=batches or tuple(sorted(set(cfg0.get("batches", ())) | set(budget_b))) or (1,),
            positions=positions or tuple(cfg0.get("positions", (100,))) + budget_p, backend=backend, threads=threads,
            warmup=warmup, seconds=seconds or cfg0.get("seconds", 3.0), min_rounds=cfg0.get("min_rounds", 10),
            runs=runs, hz=hz or cfg0.get("hz") or (bud or {}).get("hz"), margin=margin,
            against=str(against) if against else None, floor=cfg0.get("floor", True), slowdown=slowdown)
        report = bench_artifact_mod.measure(artifact, cfg, progress=lambda m: click.echo(m, err=True))
    except (ValueError, BackendUnavailable, ManifestError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(bench_artifact_mod.markdown(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        click.echo(f"wrote {json_out}")
    if write_baseline is not None:
        try:
            data = artifact_gate.make_baseline(report, tolerance, ratios_only, previous)
        except bench_gate.GateError as e:
            raise click.ClickException(str(e)) from None
        write_baseline.parent.mkdir(parents=True, exist_ok=True)
        write_baseline.write_text(json.dumps(data, indent=1) + "\n")
        click.echo(f"wrote baseline {write_baseline}: {len(data['ratios'])} ratios"
                   + (f", {len(data['absolute'])} absolute figures (this machine only)" if "absolute" in data else "")
                   + f"; tolerances {min(e['tolerance'] for s in ('ratios', 'absolute') for e in data.get(s, {}).values()):.0%}"
                   f"..{data['tolerance']:.0%} from {data['baseline_runs']} runs; a check takes {data['runs']} run(s)")
        if data.get("note"):
            click.echo(f"note: {data['note']}")
        load, cores = (report["machine"].get("loadavg") or [0])[0], report["machine"].get("cores") or 1
        if "absolute" in data and load > 0.5 * cores:
            click.echo(f"warning: load average {load:.1f} on {cores} cores while measuring: absolute figures from a "
                       "busy machine do not repeat; on shared CI write the baseline with --ratios-only")
        for k, e in data.get("ungated", {}).items():
            click.echo(f"not gated: {k} (run-to-run noise {e['noise']:.0%} would need a {e['would_need']:.0%} tolerance)")
    if write_budget:
        path = budget if budget is not None else artifact_gate.budget_path(artifact)
        path.write_text(json.dumps(artifact_gate.make_budget(report, cfg.hz, cfg.margin), indent=1) + "\n")
        click.echo(f"wrote budget {path}: p99 <= {cfg.margin:.0%} of the {1e3 / cfg.hz:.1f} ms period at batch "
                   + ", ".join(map(str, cfg.batches)) + " on this machine")
    results = []
    try:
        if base is not None:
            changed = artifact_gate.version_changes(base, report)
            if changed:
                click.echo("since the baseline: " + "; ".join(changed))
            results += artifact_gate.check_baseline(report, base, ratios_only)
        if bud is not None:
            results.append(("budget", artifact_gate.check_budget(report, bud, f"the budget {budget_file}")))
    except artifact_gate.Refused as e:
        raise Refused(str(e)) from None
    except bench_gate.GateError as e:
        raise click.ClickException(str(e)) from None
    for what, result in results:
        click.echo(result.format(what))
    if any(not r.ok for _, r in results):
        sys.exit(1)
