"""lram bench: exported step vs PyTorch eager vs the memory floor vs a KV-cache Decision Transformer,
side by side in one run; JSON + markdown + plots; ``--check`` gates on stored ratios."""
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
@click.option("--quick", is_flag=True, help="CI mode (< 2 min): tiny + 16M at batch 1, contexts 50 and 800")
@click.option("--presets", help="comma-separated model presets (default: tiny,16M)")
@click.option("--batches", help="comma-separated batch sizes (default: 1,16; --quick: 1)")
@click.option("--positions", help="LRAM episode positions (default: 50,200,800,1600,10000)")
@click.option("--contexts", help="DT context lengths in timesteps (default: 50,200,800,1600)")
@click.option("--group-seconds", type=click.FloatRange(min=0.1), help="target seconds per interleaved group")
@click.option("--no-sequential", is_flag=True, help="skip the naive sequential export")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="folder for report.json, report.md, PNGs (default: bench-out; with --from-report: none)")
@click.option("--from-report", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="measure nothing: use this report.json (re-render, --check it, or --write-baseline from it)")
@click.option("--no-plots", is_flag=True, help="skip the PNGs")
@click.option("--check", "baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="compare the measured ratios with this baseline; exit 1 on a regression")
@click.option("--write-baseline", type=click.Path(dir_okay=False, path_type=Path),
              help="store this run's ratios as a baseline (with --tolerance)")
@click.option("--tolerance", type=click.FloatRange(min=0.01), default=0.35, show_default=True,
              help="relative tolerance written into a new baseline (the noisier ratios get at least 0.5)")
@click.option("--inject-slowdown", type=click.FloatRange(min=1.0), default=1.0, hidden=True,
              help="test only: every LRAM ORT call takes this many times as long")
def bench(quick, presets, batches, positions, contexts, group_seconds, no_sequential, out_dir, from_report, no_plots,
          baseline, write_baseline, tolerance, inject_slowdown):
    """Benchmark one environment step side by side (one thread, interleaved rounds, medians)."""
    from lram.bench import gate as bench_gate, latency as bench_latency, report as bench_report

    overrides = {k: v for k, v in {"presets": _names(presets), "batches": _ints(batches),
                                   "positions": _ints(positions), "contexts": _ints(contexts),
                                   "group_seconds": group_seconds}.items() if v is not None}
    if no_sequential:
        overrides["sequential"] = False
    if inject_slowdown != 1.0:
        overrides["inject_slowdown"] = inject_slowdown
    base = None
    if baseline is not None:  # read it first: a malformed baseline should not cost a whole run
        try:
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
