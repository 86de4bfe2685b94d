"""lram calibrate: FP32 step graph -> FP16 or INT8 step graph, with an accuracy report and a gate."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click


def _move(src: Path, dst: Path) -> None:
    from lram.runtime.manifest import sidecar_path

    os.replace(src, dst)
    os.replace(sidecar_path(src), sidecar_path(dst))


@click.command("calibrate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(["fp16", "int8", "int8-nbits", "int4-nbits", "bf16-state"]), required=True,
              help="int8-nbits / int4-nbits: weight-only MatMulNBits for ONNX Runtime's CPU (any ONNX Runtime flavour); "
                   "bf16-state: the native graph's mLSTM memories stored as bfloat16 (half the state traffic)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="OUT.onnx")
@click.option("--env", "env_id", default=None, help="simulator id (default: the task named in the manifest), "
              "e.g. metaworld:pick-place-v3 or gym:Pendulum-v1; a graph exported for a reference-code task "
              "without a simulator here (metaworld:<task>-v2, Atari, ...) names one with a simulator, e.g. its -v3 twin")
@click.option("--rollouts", type=click.IntRange(min=1), default=50, show_default=True,
              help="closed-loop episodes per graph (held-out seeds 30000+); 20 cannot show a 5-point drop")
@click.option("--drift-steps", type=click.IntRange(min=10), default=10_000, show_default=True,
              help="side-by-side steps with the state never reset")
@click.option("--window", type=click.IntRange(min=1), default=1_000, show_default=True, help="drift window (steps)")
@click.option("--tolerance", type=float, default=5.0, show_default=True,
              help="largest allowed drop of closed-loop success, in percentage points")
@click.option("--max-state-error", type=float, default=0.5, show_default=True,
              help="relative state error (||d||/||ref|| per tensor) counted as divergence")
@click.option("--max-growth", type=float, default=3.0, show_default=True,
              help="drift growth (last/first windows) counted as divergence")
@click.option("--min-agreement", type=float, default=None, help="also fail below this action agreement (0..1)")
@click.option("--int8-mode", type=click.Choice(["static", "weights"]), default="static", show_default=True,
              help="static: INT8 weights + calibrated INT8 activations; weights: INT8 weights only")
@click.option("--method", type=click.Choice(["minmax", "percentile"]), default="minmax", show_default=True,
              help="activation range estimator (static INT8)")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="recorded calibration data (.npz); recorded now when absent")
@click.option("--save-data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the recorded calibration data here")
@click.option("--calib-episodes", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--calib-samples", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--min-samples", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--target-return", type=float, default=None, help="return-to-go target (default: the manifest's)")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="accuracy report JSON (default: OUT.report.json)")
@click.option("--no-check", is_flag=True, help="write the graph without the accuracy report and gate")
@click.option("--keep-failed", is_flag=True, help="leave a graph that fails the gate at OUT (default: OUT.rejected.onnx)")
def calibrate(model, precision, output, env_id, rollouts, drift_steps, window, tolerance, max_state_error, max_growth,
              min_agreement, int8_mode, method, data, save_data, calib_episodes, calib_samples, min_samples,
              target_return, report_path, no_check, keep_failed):
    """Convert the FP32 step graph MODEL.onnx to FP16 or INT8, check it against FP32 in the simulator, and exit
    non-zero when closed-loop success drops more than --tolerance points or the state diverges."""
    from lram.calibration import accuracy
    from lram.calibration.graph import GraphError
    from lram.calibration.record import CalibrationDataError, load_calibration, record, save_calibration
    from lram.runtime.manifest import ManifestError, sidecar_path
    from lram.runtime.model_files import read_manifest

    from lram.cli.file_checks import check_onnx_file, check_output_file

    if output.suffix != ".onnx":
        raise click.BadParameter("must end in .onnx", param_hint="-o")
    if output.resolve() == model.resolve():
        raise click.BadParameter("must differ from MODEL", param_hint="-o")
    # every file this command writes, checked before minutes of conversion and simulation
    check_onnx_file(model)
    check_output_file(output, "-o")
    check_output_file(report_path or output.with_name(output.stem + ".report.json"), "--report")
    check_output_file(save_data, "--save-data")
    try:
        manifest = read_manifest(model)
        if manifest.precision != "fp32":
            raise click.ClickException(f"{model} is already {manifest.precision}: calibrate the FP32 graph")
        staging = output.with_name(f".{output.stem}.staging.onnx")
        if precision == "fp16":
            from lram.calibration.fp16 import write_fp16

            info = write_fp16(model, staging)
            click.echo(f"fp16: {info['converted_matmuls']} weight MatMuls in FP16; kept FP32: "
                       f"{len(info['kept_fp32_matmuls'])} on the state recurrence, and the whole cell / state path")
        elif precision == "bf16-state":
            from lram.calibration.state_bf16 import write_state_bf16

            info = write_state_bf16(model, staging)
            before, after = info["state_bytes_per_robot"]
            click.echo(f"bf16-state: {len(info['bf16_states'])} mLSTM memories in bfloat16; state per robot "
                       f"{before / 1e6:.3g} -> {after / 1e6:.3g} MB")
        elif precision.endswith("-nbits"):
            from lram.calibration.nbits import write_nbits

            info = write_nbits(model, staging, precision)
            click.echo(f"{precision}: {info['quantized_matmuls']} weight MatMuls as MatMulNBits; FP32: "
                       f"{len(info['fp32_matmuls'])} (state recurrence, tiny or gate projections) and the cell / state path")
        else:
            from lram.calibration.int8 import write_int8

            cs = None
            if int8_mode == "static":
                if data is not None:
                    cs = load_calibration(data, manifest, min_samples)
                    click.echo(f"calibration data: {data} ({len(cs)} samples from {cs.meta.get('env')})")
                else:
                    cs = record(model, env_id, episodes=calib_episodes, samples=calib_samples,
                                target_return=target_return, progress=True)
                    if len(cs) < min_samples:
                        raise CalibrationDataError(f"recorded only {len(cs)} samples (< {min_samples}); raise "
                                                   "--calib-episodes / --calib-samples")
                    if save_data:
                        save_calibration(cs, save_data)
                        click.echo(f"wrote calibration data {save_data}")
            info = write_int8(model, staging, cs, mode=int8_mode,
                              **({"method": method} if int8_mode == "static" else {}))
            click.echo(f"int8 ({int8_mode}): {info['quantized_matmuls']} weight MatMuls quantised; FP32: "
                       f"{len(info['fp32_matmuls'])} (state recurrence, tiny or gate projections) and the cell / state path")
        if no_check:
            _move(staging, output)
            click.echo(f"wrote {output} and {sidecar_path(output)} (not checked: --no-check)")
            return
        thresholds = {"tolerance_points": tolerance, "max_state_error": max_state_error, "max_growth": max_growth,
                      "min_agreement": min_agreement}
        report = accuracy.compare(model, staging, env_id, rollouts=rollouts, drift_steps=drift_steps, window=window,
                                  target_return=target_return, progress=True, thresholds=thresholds)
    except (GraphError, ManifestError, CalibrationDataError, ValueError) as e:
        for p in (locals().get("staging"),):
            if p is not None and Path(p).exists():
                Path(p).unlink()
                sidecar_path(p).unlink(missing_ok=True)
        raise click.ClickException(str(e)) from None
    passed = report["gate"]["passed"]
    final = output if passed or keep_failed else output.with_name(output.stem + ".rejected.onnx")
    _move(staging, final)
    report["candidate"] = str(final)
    report["conversion"] = info
    report_path = report_path or output.with_name(output.stem + ".report.json")
    report_path.write_text(json.dumps(report, indent=2, default=float))
    click.echo(accuracy.format_report(report))
    click.echo(f"wrote {final}, {sidecar_path(final)} and {report_path}")
    if not passed:
        raise SystemExit(1)
