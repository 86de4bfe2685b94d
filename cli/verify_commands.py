"""lram verify: any candidate against any reference, side by side over long runs."""
from __future__ import annotations

import json

import click

from lram.runtime.backends import BACKENDS

from .checkpoint_options import checkpoint_options, is_reference_zip, load_any


@click.command(name="verify")
@click.argument("candidate", type=click.Path(exists=True))
@click.option("--against", "reference", required=True, type=click.Path(),
              help="The reference: the checkpoint it was exported from (directory or reference model.zip), or "
                   "another graph / engine (e.g. the FP32 graph an FP16 or INT8 graph was made from).")
@click.option("--steps", default=10_000, show_default=True, help="Environment steps (half simulator, half adversarial).")
@click.option("--robots", default=4, show_default=True, help="Robots run side by side (batch).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="Backend for a graph or engine CANDIDATE (a graph reference always runs on ort-cpu).")
@click.option("--reference-dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Precision of a checkpoint reference (float64 measures an fp32 graph's own error).")
@click.option("--atol", type=float, help="Allowed |dlogit| = atol + rtol * max|logit| per robot-step "
                                         "[default by precision: fp32 1e-4, fp16 0.05; int8 not gated].")
@click.option("--rtol", type=float, help="Relative part of the allowed |dlogit| [fp32 5e-5, fp16 0.02].")
@click.option("--max-state-error", default=0.5, show_default=True,
              help="Fail when the stabiliser-aligned relative state error passes this (graph vs graph).")
@click.option("--window", default=1000, show_default=True, help="Steps per reported window.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@checkpoint_options
def verify_(candidate, reference, steps, robots, backend, reference_dtype, atol, rtol, max_state_error, window,
            seed, json_out, env, hydra_config, decode, obs_dim):
    """Step CANDIDATE (a graph, an engine or a checkpoint) and the --against reference on the same inputs and
    compare logits, actions and state; exit 1 past tolerance. The simulator half runs where the task (--env, or
    the one the model names) has a simulator here. With a reference model.zip, --env, --decode and --obs-dim
    default to what the graph was exported with."""
    import torch

    from lram.model.checkpoint import CheckpointError
    from lram.model.config import ConfigError
    from lram.runtime.backend import BackendUnavailable
    from lram.runtime.manifest import ManifestError
    from lram.cli.file_checks import check_output_file
    from lram.verify.parity import VerifyError, verify
    from lram.verify.runners import CheckpointRunner, GraphRunner, RunnerError, is_graph

    torch.set_num_threads(1)
    errors = (CheckpointError, ConfigError, ManifestError, VerifyError, RunnerError, BackendUnavailable,
              FileNotFoundError)
    if (atol is None) != (rtol is None):
        raise click.UsageError("give both --atol and --rtol, or neither (defaults by precision)")
    runners = []
    try:
        check_output_file(json_out, "--json")  # before a long run, not after it
        dtype = torch.float64 if reference_dtype == "float64" else torch.float32
        graphs = [p for p in (candidate, reference) if is_graph(p)]
        task = _graph_task(graphs[0]) if graphs else {}
        for path, kind in ((reference, "ort-cpu"), (candidate, backend)):
            if is_graph(path):
                runners.append(GraphRunner(path, kind))
                continue
            # what the graph was exported for is the default: the same options as export, without repeating them
            if is_reference_zip(path) and env is None:
                env = task.get("name") or None
                if obs_dim is None and task.get("obs_kind") == "state" and task.get("obs_shape"):
                    obs_dim = task["obs_shape"][0]
            model = load_any(path, env, hydra_config, decode or task.get("action_decode"), obs_dim)
            _same_task(graphs[0] if graphs else None, task, model.task.to_dict())
            runners.append(CheckpointRunner(model, dtype, name=str(path)))
        ref, cand = runners
        report = verify(cand, ref, steps=steps, robots=robots, seed=seed, env_id=env, atol=atol, rtol=rtol,
                        window=window, progress=True, max_state_error=max_state_error)
    except errors as e:
        raise click.ClickException(str(e)) from None
    finally:
        for r in runners:
            r.close()
    click.echo(f"{report.candidate}  vs  {report.reference}")
    click.echo(f"{'phase':<12} {'steps':>12} {'max |dlogit|':>13} {'/ allowed':>10} {'agreement':>10} {'near-ties':>10} "
               f"{'state err':>10}")
    for w in report.windows:
        se = "-" if w.state_error is None else f"{w.state_error:.2e}"
        excess = "-" if w.worst_excess is None else f"{w.worst_excess:.3f}"
        click.echo(f"{w.phase:<12} {w.start:>6}-{w.start + w.steps:<5} {w.max_abs_logit_diff:>13.2e} "
                   f"{excess:>10} {w.action_agreement:>10.4f} {w.near_ties:>10} {se:>10}")
    for note in report.notes:
        click.echo(f"note: {note}")
    tol = (f"worst {report.worst_excess:.2f} x the allowed atol {report.atol:g} + rtol {report.rtol:g} x max|logit|"
           if report.atol is not None else "logits not gated at this precision")
    click.echo(f"{'PASS' if report.passed else 'FAIL'}: {report.steps} steps x {report.robots} robots, "
               f"{report.episodes} episodes; max |dlogit| {report.max_abs_logit_diff:.2e}, {tol}; action agreement {report.action_agreement:.4%} "
               f"({report.near_ties} near-ties, exact {report.exact_agreement:.4%})"
               + ("" if report.max_state_error is None else f"; max state error {report.max_state_error:.2e}"))
    for f in report.failures:
        click.echo(f"  failed: {f}")
    if json_out:
        from pathlib import Path

        Path(json_out).write_text(json.dumps(report.to_dict(), indent=2, default=float))
    if not report.passed:
        raise SystemExit(1)


def _graph_task(graph) -> dict:
    """The task the graph's manifest records."""
    from lram.runtime.model_files import read_manifest

    return read_manifest(graph).model.get("task") or {}


def _same_task(graph, task: dict, ours: dict) -> None:
    diffs = [f"{k} {task[k]!r} vs {ours.get(k)!r}" for k in sorted(task, key=lambda k: k != "name") if task[k] != ours.get(k)]
    if diffs:
        raise click.ClickException(f"{graph} was exported for another task than the checkpoint is loaded for "
                                   f"({'; '.join(diffs[:3])}): give verify the --env, --hydra-config, --decode and "
                                   "--obs-dim that export had")
