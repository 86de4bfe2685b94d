"""One way for every command that takes a checkpoint (info, export, verify, evaluate) to accept either this
project's checkpoint directory or the reference training code's ``model.zip``: the same options, the same
loader, the same report of what the loader did (printed on stderr, so ``--json`` output stays clean)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from lram.model.config import ACTION_DECODES

ENV_HELP = ("Task id DOMAIN:TASK, e.g. metaworld:reach-v2, dmcontrol:cheetah-run, atari:BreakoutNoFrameskip-v4, "
            "procgen:bigfish: the task a reference model.zip serves (required with a zip). For an lram checkpoint "
            "it defaults to the checkpoint's own task. verify and evaluate also run its simulator where this "
            "project has one (Meta-World v3, gym:Pendulum-v1).")


def checkpoint_options(command):
    """Add --env, --hydra-config, --decode and --obs-dim (in that order on --help)."""
    for opt in reversed([
        click.option("--env", "env", default=None, help=ENV_HELP),
        click.option("--hydra-config", type=click.Path(), default=None,
                     help="Reference model.zip only: the run's .hydra/config.yaml or its run directory; its "
                          "architecture is checked against the weights, its reward scale / target return win."),
        click.option("--decode", type=click.Choice(ACTION_DECODES), default=None,
                     help="How logits become a continuous action: 'reference' (the reference code's rule; default "
                          "for a model.zip) or 'bin_center' (default for lram checkpoints)."),
        click.option("--obs-dim", type=click.IntRange(min=1), default=None,
                     help="Reference model.zip only: observation size of a task the registry has none for "
                          "(Mimicgen)."),
    ]):
        command = opt(command)
    return command


def is_reference_zip(checkpoint) -> bool:
    """A ``.zip`` path or a zip file is taken for a reference model.zip (its loader names what is wrong with it);
    anything else for an lram checkpoint directory."""
    import zipfile

    p = Path(checkpoint)
    return p.suffix == ".zip" or (p.is_file() and zipfile.is_zipfile(p))


def load_any(checkpoint, env=None, hydra_config=None, decode=None, obs_dim=None, *, echo=True):
    """The model of ``checkpoint``; every bad input ends in a one-line click error naming the fix."""
    from lram.model.checkpoint import CheckpointError, load_checkpoint
    from lram.model.config import ConfigError

    try:
        if is_reference_zip(checkpoint):
            return _load_reference(checkpoint, env, hydra_config, decode, obs_dim, echo)
        for name, value in (("--hydra-config", hydra_config), ("--obs-dim", obs_dim)):
            if value is not None:
                raise click.UsageError(f"{name} applies to a reference-code model.zip only; {checkpoint} is an "
                                       "lram checkpoint directory")
        model = load_checkpoint(checkpoint)
        if decode is not None and decode != model.task.action_decode:
            model.task = dataclasses.replace(model.task, action_decode=decode)
            _say(echo, f"{checkpoint}: action decode {decode} (the checkpoint's own is {model.task.action_decode})")
        return model
    except (CheckpointError, ConfigError) as e:
        raise click.ClickException(str(e)) from None


def _load_reference(checkpoint, env, hydra_config, decode, obs_dim, echo):
    from lram.model.hydra_task import reference_task
    from lram.model.reference_checkpoint import load_reference_zip, read_hydra_config

    if not env:
        raise click.UsageError(f"{checkpoint} is a reference-code model.zip, which serves no task by itself: name "
                               "it with --env DOMAIN:TASK (e.g. --env metaworld:reach-v2; add --hydra-config "
                               "RUN_DIR/.hydra/config.yaml to check it against the run)")
    if not Path(checkpoint).exists():
        raise click.ClickException(f"reference checkpoint {checkpoint} does not exist")
    cfg = read_hydra_config(hydra_config)[0] if hydra_config is not None else None
    task, notes = reference_task(env, cfg, decode or "reference", obs_dim)
    model = load_reference_zip(checkpoint, hydra_config, task)
    if echo:
        for line in describe_reference_load(model.reference_report, notes, task):
            _say(True, line)
    return model


def describe_reference_load(report, task_notes: list, task) -> list[str]:
    """What the reference loader did, one line per fact."""
    cfg = report.config
    lines = [f"{report.source}: reference-code checkpoint, {cfg.flavour} {cfg.num_blocks} blocks x "
             f"{cfg.embedding_dim}, sLSTM at {list(cfg.slstm_at)}, encoders {','.join(cfg.encoders)}"]
    lines.append("  key prefixes stripped: " + (", ".join(report.stripped_prefixes) or "none"))
    dropped = sorted({k.split(".", 1)[0] for k in report.dropped_keys})
    lines.append(f"  unused heads dropped: {', '.join(dropped) if dropped else 'none'}"
                 + (f" ({len(report.dropped_keys)} tensors)" if dropped else ""))
    if report.converted_slstm_blocks:
        lines.append(f"  sLSTM blocks {report.converted_slstm_blocks} converted from the CUDA kernel layout")
    elif cfg.slstm_at:
        lines.append(f"  sLSTM blocks {list(cfg.slstm_at)} taken as stored ({report.slstm_layout} layout)")
    if report.hydra_values:
        lines.append(f"  checked against the Hydra config: {', '.join(sorted(report.hydra_values))}")
    lines += [f"  {n}" for n in (*report.notes, *task_notes)]
    decode = ("the reference code's rule: argmax over all 274 classes, left bin edge"
              if task.action_decode == "reference" else "bin centre, argmax over the 256 bins")
    if task.action_kind == "continuous":
        lines.append(f"  action decode: {task.action_decode} ({decode})")
    return lines


def _say(echo: bool, line: str):
    if echo:
        click.echo(line, err=True)
