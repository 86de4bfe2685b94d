"""``lram serve``: run an exported policy as a ROS 2 node over DDS (needs the ``ros2`` extra, not ROS)."""
from __future__ import annotations

from pathlib import Path

import click

from lram.runtime.backends import BACKENDS


@click.command(name="serve")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--ros2", "contract_path", type=click.Path(dir_okay=False), default=None,
              help="the ROS 2 contract (YAML/JSON): topics, joint names, observation layout, action scaling "
                   "(default: MODEL's NAME.ros2.yaml beside it)")
@click.option("--write-contract", "write_path", type=click.Path(dir_okay=False), default=None,
              help="write a starter contract for MODEL here and exit (the shipped one for Meta-World policies)")
@click.option("--domain-id", type=int, default=None, help="override the contract's DDS domain (ROS_DOMAIN_ID)")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="ONNX Runtime intra-op threads")
@click.option("--infer-timeout-ms", type=float, default=None, help="watchdog limit per inference (default: one period; 0 disables)")
@click.option("--max-ticks", type=int, default=None, help="stop after this many ticks (default: until Ctrl-C/SIGTERM)")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), default=None,
              help="append one JSON line per tick with a robot enabled (observation, command, verdict)")
def serve(model, contract_path, write_path, domain_id, backend, threads, infer_timeout_ms, max_ticks, record_path):
    """Serve MODEL as a ROS 2 policy node: subscribe to the contract's inputs, publish its action topic at the
    control rate. Robots start disabled: publish std_msgs/Bool true on <ns>/<node>/enable."""
    from lram.runtime.manifest import ManifestError
    from lram.runtime.ros2.contract import ContractError, contract_beside, load_contract

    if contract_path is not None and write_path is not None:
        raise click.UsageError("give either --ros2 CONTRACT or --write-contract PATH, not both")
    if contract_path is None and write_path is None:
        contract_path = contract_beside(model)
        if contract_path is None:
            raise click.UsageError(f"no contract: pass --ros2 CONTRACT or put {Path(model).stem}.ros2.yaml beside "
                                   "the graph (--write-contract writes a starter)")
    if write_path is not None:
        from lram.runtime.ros2.starter import write_starter_contract

        try:
            click.echo(f"contract: {write_starter_contract(model, write_path)}")
        except (ContractError, ManifestError) as e:
            raise click.ClickException(str(e)) from None
        return
    import signal

    from lram.runtime.backends import BackendUnavailable
    from lram.runtime.policy import Policy
    from lram.runtime.ros2.node import PolicyNode
    from lram.runtime.ros2.transport import DdsTransport

    try:
        contract = load_contract(contract_path)
        if domain_id is not None:
            import dataclasses

            if not 0 <= domain_id <= 232:
                raise ContractError(f"--domain-id must be in 0..232, not {domain_id}")
            contract = dataclasses.replace(contract, domain_id=domain_id)
        policy = Policy.load(model, n_robots=len(contract.robots), backend=backend, threads=threads,
                             miss_policy=contract.miss_policy, target_return=contract.target_return)
        contract.check_against(policy.manifest)
    except (ContractError, ManifestError, BackendUnavailable) as e:
        raise click.ClickException(str(e)) from None
    if not policy.has_target:
        raise click.ClickException("the manifest has no target_return: set target_return in the contract")
    # --infer-timeout-ms: default one period, 0 disables
    periods = 1.0 if infer_timeout_ms is None else (infer_timeout_ms / 1e3 / contract.period if infer_timeout_ms > 0 else None)
    record = open(record_path, "a") if record_path else None
    transport = DdsTransport(contract)
    node = PolicyNode(policy, contract, transport, record=record, timeout_periods=periods)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: node.stop())
    for r, ns in enumerate(contract.robots):
        ins = ", ".join(f"{contract.topic(r, s.topic)[2:]} ({s.type})" for s in contract.inputs.values())
        click.echo(f"robot {r}{' ' + ns if ns else ''}: {ins} -> {contract.topic(r, contract.action.topic)[2:]} "
                   f"({contract.action.type}); enable on {contract.control_topic(r, 'enable')[2:]}")
    click.echo(f"serving {model} at {contract.control_hz:g} Hz on DDS domain {contract.domain_id} (disabled until enabled)",
               err=False)
    try:
        counters = node.run(max_ticks=max_ticks)
    finally:
        transport.close()
        if record is not None:
            record.close()
        policy.close()
    for r, rc in enumerate(counters.robots):
        click.echo(f"robot {r}: {rc.ticks} commands, {rc.ok} from the model, {rc.misses} misses "
                   f"(stale {rc.stale}, rejected {rc.rejected}, timeout {rc.timeout}, backend error {rc.backend_error}), "
                   f"{rc.resets} resets, {rc.enables} enables")
    click.echo(f"node: {counters.ticks} ticks, {counters.overruns} overruns, {counters.skipped_ticks} skipped")
