"""lram export."""
from __future__ import annotations


import click

from lram.export.onnx_export import DEFAULT_OPSET, ExportError, export_onnx
from lram.export.step_graph import FLAVOURS
from lram.model.checkpoint import CheckpointError
from lram.model.config import ConfigError
from lram.runtime.manifest import ManifestError

from .checkpoint_options import checkpoint_options, load_any


def default_flavour() -> str:
    """The fastest flavour ONNX Runtime's CPU (the embedded default) can run with this install: native where the
    compiled xLSTM cores were built (pip install with a C compiler), else ort. Standard is one flag away."""
    from lram.runtime.backend import BackendUnavailable
    from lram.runtime.native_xlstm import load_kernels

    try:
        load_kernels()
    except BackendUnavailable:
        return "ort"
    return "native"


_ERRORS = (ExportError, CheckpointError, ConfigError, ManifestError, FileNotFoundError)


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
@click.option("--flavour", type=click.Choice(FLAVOURS), default=None,
              help="'native' (default where this install has the compiled xLSTM cores): the fastest on ONNX Runtime's "
                   "CPU, each xLSTM layer core one node run by compiled code between ONNX Runtime segments; 'ort' "
                   "(default otherwise): ONNX Runtime >= 1.30 alone, its fused LinearAttention for the mLSTM memory; "
                   "'standard': only ai.onnx ops, for TensorRT, calibration and other runtimes; 'plugin': one "
                   "lram::*CellStep node per cell update for the TensorRT plugins.")
@click.option("--logits/--no-logits", default=True, show_default=True, help="Also output the raw logits.")
@click.option("--mode", type=click.Choice(["chunk", "sequential"]), default="chunk", show_default=True,
              help="chunk: three tokens through each block at once (weights read once per step).")
@checkpoint_options
def export(checkpoint, output, opset, batch, flavour, logits, mode, env, hydra_config, decode, obs_dim):
    """Export CHECKPOINT (an lram checkpoint directory, or a reference-code model.zip with --env TASK) to a
    single-step recurrent ONNX graph: one call = one environment step. Needs no simulator."""
    model = load_any(checkpoint, env, hydra_config, decode, obs_dim)
    flavour = flavour or default_flavour()
    try:
        out = export_onnx(model, output, opset=opset, batch=_batch(batch), with_logits=logits, mode=mode, flavour=flavour)
    except _ERRORS as e:
        raise click.ClickException(str(e)) from None
    from lram.runtime.manifest import sidecar_path
    from lram.runtime.model_files import read_manifest

    manifest = read_manifest(out)
    size = out.stat().st_size / 1e6
    click.echo(f"wrote {out} ({size:.1f} MB, opset {opset}, {flavour} flavour, batch {batch}) and {sidecar_path(out).name}")
    click.echo(f"state: {len(manifest.state)} tensors, {manifest.state_bytes_per_robot / 1e6:.2f} MB per robot; "
               f"action: {manifest.action['kind']}"
               + (f", decode {manifest.action['decode']}" if manifest.action.get("decode") else ""))
