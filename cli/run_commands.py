"""``lram run``: run an exported policy at a fixed rate in a simulator and report success and latency.

Imports only the runtime (numpy, onnxruntime) and, for the env, gymnasium; never torch.
"""
from __future__ import annotations

import click

from lram.runtime.backends import BACKENDS
from lram.runtime.safe_action import MISS_POLICIES


@click.command(name="run")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--env", "env_id", required=True, help="metaworld:<task> (e.g. metaworld:pick-place-v3) or gym:<id> (e.g. gym:Pendulum-v1)")
@click.option("--hz", type=float, default=50.0, show_default=True, help="control rate")
@click.option("--episodes", type=int, default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="ONNX Runtime intra-op threads")
@click.option("--miss-policy", type=click.Choice(MISS_POLICIES), default="hold", show_default=True,
              help="action when the model has none in time: hold the last, send zero, or send zero and stop")
@click.option("--infer-timeout-ms", type=float, default=None, help="watchdog limit per inference (default: one period; 0 disables)")
@click.option("--warmup", type=int, default=10, show_default=True, help="inference calls before the first tick")
@click.option("--target-return", type=float, default=None, help="return-to-go target (default: the manifest's)")
@click.option("--realtime/--no-realtime", default=True, show_default=True,
              help="sleep to the real schedule, or run as fast as possible while still accounting deadlines")
@click.option("--spin-ms", type=float, default=0.0, show_default=True,
              help="busy-wait this long before each release for a punctual start (costs CPU)")
@click.option("--max-steps", type=int, default=None, help="stop after this many ticks")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="write the JSON report here")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None, help="write latency PNGs here")
def run(model, env_id, hz, episodes, seed, backend, threads, miss_policy, infer_timeout_ms, warmup, target_return,
        realtime, spin_ms, max_steps, report_path, plots_dir):
    """Run MODEL (an exported step graph, or a TensorRT engine with its manifest) in a simulator."""
    from tqdm import tqdm

    from lram.cli.file_checks import check_output_dir, check_output_file
    from lram.runtime.backends import BackendUnavailable
    from lram.runtime.control_loop import ControlLoop, LoopConfig, WarmupFailed
    from lram.runtime.gym_adapter import GymAdapter
    from lram.runtime.policy import Policy
    from lram.runtime.signals import terminate_as_interrupt

    # before the run, not after it: a run can take an hour
    check_output_file(report_path, "--report")
    check_output_dir(plots_dir, "--plots")
    try:
        policy = Policy.load(model, n_robots=1, backend=backend, threads=threads, miss_policy=miss_policy,
                             target_return=target_return)
    except (BackendUnavailable, ValueError) as e:  # ValueError: a bad --target-return; ManifestError is one too
        raise click.ClickException(str(e)) from None
    if not policy.has_target:
        raise click.ClickException("the manifest has no target_return: pass --target-return (the return to ask the model for)")
    try:
        adapter = GymAdapter(env_id, episodes, seed=seed)
    except (RuntimeError, ValueError) as e:
        raise click.ClickException(str(e)) from None

    bar = tqdm(total=episodes, unit="ep", desc=env_id)

    def on_episode(ep):
        judged = [e.success for e in adapter.results if e.success is not None]
        bar.update(1)
        bar.set_postfix(success=f"{sum(judged)}/{len(judged)}", ret=f"{ep.ret:.1f}")

    adapter.on_episode = on_episode
    # --infer-timeout-ms: default one period, 0 disables
    periods = 1.0 if infer_timeout_ms is None else (infer_timeout_ms / 1e3 * hz if infer_timeout_ms > 0 else None)
    try:
        config = LoopConfig(hz=hz, warmup=warmup, timeout_periods=periods, realtime=realtime, spin_ms=spin_ms)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    loop = ControlLoop(policy, adapter.sense, adapter.act, config,
                       context={"model": str(model), "env": env_id, "seed": seed, "threads": threads,
                                "backend_requested": backend})
    try:
        with terminate_as_interrupt():  # a service manager's SIGTERM ends the run like Ctrl-C, with the report
            report = loop.run(max_steps=max_steps)
    except WarmupFailed as e:
        raise click.ClickException(str(e)) from None
    finally:
        bar.close()
        adapter.close()
    summary = adapter.summary()
    report.extra.update(summary)
    click.echo(f"{env_id}: {summary['episodes']} episodes, success rate "
               + ("n/a" if summary["success_rate"] is None else f"{summary['success_rate']:.2f}")
               + ("" if summary["mean_return"] is None else f", mean return {summary['mean_return']:.2f}"))
    click.echo(report.format_text())
    if report_path:
        click.echo(f"report: {report.write_json(report_path)}")
    if plots_dir:
        from lram.runtime.plots import write_plots

        for p in write_plots(loop.log, loop.period, plots_dir, title=f"{env_id} @ {hz:g} Hz"):
            click.echo(f"plot: {p}")
    policy.close()
    if report.stop_reason == "interrupted":
        raise SystemExit(130)
    if report.stop_reason == "terminated":
        raise SystemExit(143)  # 128 + SIGTERM, what a service manager expects
