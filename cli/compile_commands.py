"""lram compile: ONNX step graph -> TensorRT engine (or --check the graph with NVIDIA's ONNX parser)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("compile")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="engine path (default: MODEL with suffix .engine)")
@click.option("--plugins", is_flag=True, help="register the lram fused-cell plugins (TensorRT >= 10.9)")
@click.option("--kernel-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="prebuilt plugin kernels (python -m lram.kernels.build --out DIR); default: compiled now with Triton")
@click.option("--max-batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="largest batch (robots) the engine accepts")
@click.option("--opt-batch", type=click.IntRange(min=1), default=None, help="batch to tune for (default: max)")
@click.option("--check", is_flag=True,
              help="only parse + build with TensorRT for RTX on this machine (no GPU needed); writes nothing. "
                   "Proves NVIDIA's ONNX parser takes the standard-op graph and a builder builds it; proves nothing "
                   "about plugin graphs, Jetson / Hopper / Thor tactics, numerics or latency (see above)")
@click.option("--workspace-mb", type=click.IntRange(min=1), default=None, help="builder workspace limit")
@click.option("-v", "--verbose", is_flag=True, help="TensorRT verbose log")
def compile_(model, output, plugins, kernel_dir, max_batch, opt_batch, check, workspace_mb, verbose):
    """Compile the step graph MODEL.onnx into a TensorRT engine (+ its manifest).

    A TensorRT engine is built on the GPU it will run on (TensorRT >= 10.9 for --plugins).

    \b
    What --check proves (TensorRT for RTX, CPU only):
      - NVIDIA's ONNX parser accepts every node of a standard-op graph;
      - a builder builds an engine from it (for RTX-class GPUs; not written).
    What it does not prove:
      - plugin-flavour graphs: TensorRT for RTX has no Python plugins (refused);
      - anything on sm_87 / sm_90 / Thor (not RTX targets), TensorRT's tactics there,
        numerics or latency.
    The plugins' kernels are checked separately without a GPU: in the Triton interpreter
    against the NumPy reference, and compiled to PTX + cubins for sm_87 / sm_90 / sm_110
    (python -m lram.kernels.build); python -m lram.kernels.gpu_check runs them on a GPU.
    """
    from lram.cli.file_checks import check_onnx_file, check_output_file
    from lram.compile import tensorrt_build as tb
    from lram.runtime.manifest import ManifestError

    check_onnx_file(model)
    if not check:
        check_output_file(output or model.with_suffix(".engine"), "-o")
    if kernel_dir:
        import os

        os.environ["LRAM_KERNEL_DIR"] = str(kernel_dir)  # read by the plugins' aot_impl during the build

    try:
        if check:
            r = tb.check_graph(model, max_batch=max_batch, verbose=verbose)
            click.echo(f"OK: {model} parses and builds with {r.flavour} {r.version} "
                       f"({len(r.inputs)} inputs, {len(r.outputs)} outputs, {r.seconds:.1f} s; engine not written)")
            return
        output = output or model.with_suffix(".engine")
        r = tb.build_engine(model, output, max_batch=max_batch, opt_batch=opt_batch, plugins=plugins,
                            workspace_mb=workspace_mb, verbose=verbose)
        click.echo(f"wrote {r.engine_path} ({r.engine_bytes / 1e6:.1f} MB, TensorRT {r.version}, {r.seconds:.1f} s) "
                   f"and {r.manifest_path}")
    except (tb.TensorRTMissing, tb.BuildError, ManifestError) as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:  # plugin errors and the like
        from lram.kernels.trt_plugins import PluginError

        if isinstance(e, PluginError):
            raise click.ClickException(str(e)) from None
        raise
