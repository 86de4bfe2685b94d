"""lram export / lram verify."""
from __future__ import annotations

import json
from pathlib import Path

import click

from lram.export.onnx_export import DEFAULT_OPSET, ExportError, export_onnx
from lram.export.step_graph import FLAVOURS
from lram.export.verify import FP32_ATOL, FP32_RTOL, VerifyError, verify
from lram.model.checkpoint import CheckpointError, load_checkpoint
from lram.model.config import ConfigError
from lram.runtime.manifest import ManifestError

DEFAULT_FLAVOUR = "ort"  # the embedded default runtime is ONNX Runtime on the CPU; standard is one flag away
_ERRORS = (ExportError, CheckpointError, ConfigError, VerifyError, ManifestError, FileNotFoundError)


def load_model(checkpoint: str, hydra_config: str | None, env: str | None):
    """Our checkpoint directory, or a reference-code model.zip (+ its Hydra config and the task's env)."""
    if str(checkpoint).endswith(".zip"):
        if not env:
            raise click.UsageError("a reference model.zip carries no task: name it with --env (e.g. metaworld:pick-place-v3)")
        from lram.model.envs import make_env
        from lram.model.reference_checkpoint import load_reference_zip

        _, task = make_env(env)
        return load_reference_zip(checkpoint, hydra_config, task)
    return load_checkpoint(checkpoint)


def _batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        b = int(value)
    except ValueError:
        raise click.BadParameter(f"--batch takes a positive integer or 'dynamic', got {value!r}") from None
    if b < 1:
        raise click.BadParameter("--batch must be at least 1")
    return b


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="NAME.onnx to write.")
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, help="ONNX opset (TensorRT 10.3 parses 9-20).")
@click.option("--batch", default="dynamic", show_default=True, help="A fixed batch size, or 'dynamic'.")
@click.option("--flavour", type=click.Choice(FLAVOURS), default=DEFAULT_FLAVOUR, show_default=True,
              help="'ort': the fastest on ONNX Runtime (>= 1.30; its fused LinearAttention for the mLSTM memory); "
                   "'standard': only ai.onnx ops, for TensorRT, calibration and other runtimes; 'plugin': one "
                   "lram::*CellStep node per cell update for the TensorRT plugins.")
@click.option("--logits/--no-logits", default=True, show_default=True, help="Also output the raw logits.")
@click.option("--mode", type=click.Choice(["chunk", "sequential"]), default="chunk", show_default=True,
              help="chunk: three tokens through each block at once (weights read once per step).")
@click.option("--hydra-config", type=click.Path(), help="Reference model.zip only: the run's .hydra/config.yaml.")
@click.option("--env", help="Reference model.zip only: the task's environment id.")
def export(checkpoint, output, opset, batch, flavour, logits, mode, hydra_config, env):
    """Export CHECKPOINT to a single-step recurrent ONNX graph: one call = one environment step."""
    try:
        model = load_model(checkpoint, hydra_config, env)
        out = export_onnx(model, output, opset=opset, batch=_batch(batch), with_logits=logits, mode=mode, flavour=flavour)
    except _ERRORS as e:
        raise click.ClickException(str(e)) from None
    from lram.runtime.manifest import Manifest, sidecar_path

    manifest = Manifest.from_json(sidecar_path(out).read_text())
    size = out.stat().st_size / 1e6
    click.echo(f"wrote {out} ({size:.1f} MB, opset {opset}, {flavour} flavour, batch {batch}) and {sidecar_path(out).name}")
    click.echo(f"state: {len(manifest.state)} tensors, {manifest.state_bytes_per_robot / 1e6:.2f} MB per robot; "
               f"action: {manifest.action['kind']}")


@click.command(name="verify")
@click.argument("graph", type=click.Path(exists=True, dir_okay=False))
@click.option("--against", "checkpoint", required=True, type=click.Path(), help="The checkpoint it was exported from.")
@click.option("--steps", default=10_000, show_default=True, help="Environment steps (half simulator, half adversarial).")
@click.option("--robots", default=4, show_default=True, help="Robots run side by side (batch).")
@click.option("--env", help="Simulator for the real-observation half (default: the checkpoint's task).")
@click.option("--atol", default=FP32_ATOL, show_default=True, help="Allowed |dlogit| = atol + rtol * max|logit| per robot-step.")
@click.option("--rtol", default=FP32_RTOL, show_default=True, help="Relative part of the allowed |dlogit|.")
@click.option("--window", default=1000, show_default=True, help="Steps per reported window.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.option("--hydra-config", type=click.Path(), help="Reference model.zip only.")
def verify_(graph, checkpoint, steps, robots, env, atol, rtol, window, seed, json_out, hydra_config):
    """Run GRAPH on ONNX Runtime and the checkpoint in PyTorch (float64) side by side; fail past tolerance."""
    import torch

    torch.set_num_threads(1)
    try:
        model = load_model(checkpoint, hydra_config, env)
        report = verify(graph, model, steps=steps, robots=robots, seed=seed, env_id=env, atol=atol, rtol=rtol,
                        window=window, progress=True)
    except _ERRORS as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{'phase':<12} {'steps':>12} {'max |dlogit|':>13} {'/ allowed':>10} {'agreement':>10} {'near-ties':>10}")
    for w in report.windows:
        click.echo(f"{w.phase:<12} {w.start:>6}-{w.start + w.steps:<5} {w.max_abs_logit_diff:>13.2e} "
                   f"{w.worst_excess:>10.3f} {w.action_agreement:>10.4f} {w.near_ties:>10}")
    for note in report.notes:
        click.echo(f"note: {note}")
    verdict = "PASS" if report.passed else "FAIL"
    click.echo(f"{verdict}: {report.steps} steps x {report.robots} robots, {report.episodes} episodes; "
               f"max |dlogit| {report.max_abs_logit_diff:.2e} vs the float64 PyTorch reference, worst "
               f"{report.worst_excess:.2f} x the allowed atol {atol:g} + rtol {rtol:g} x max|logit|; action agreement "
               f"{report.action_agreement:.4%} ({report.near_ties} near-ties)")
    if json_out:
        Path(json_out).write_text(json.dumps(report.to_dict(), indent=2))
    if not report.passed:
        raise SystemExit(1)


