"""``lram collect``, ``lram train``, ``lram evaluate``, ``lram info``: the torch side of the command line."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .checkpoint_options import checkpoint_options, is_reference_zip, load_any


def _fail(e: Exception):
    raise click.ClickException(str(e)) from None


@click.command()
@click.option("--env", "env_id", required=True, help="Environment id, e.g. metaworld:pick-place-v3 or gym:Pendulum-v1.")
@click.option("--episodes", type=click.IntRange(min=1), required=True, help="Number of expert episodes.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for the episode files.")
@click.option("--seed0", type=click.IntRange(min=0), default=0, show_default=True,
              help="First data seed (episodes use seed0 .. seed0+N-1; keep them apart from evaluation seeds).")
def collect(env_id, episodes, out, seed0):
    """Record scripted-expert episodes (one .npz per episode) for behaviour cloning."""
    from lram.model.envs import EnvError
    from lram.model.episodes import EpisodeError
    from lram.model.episodes import collect as run_collect

    if Path(out).exists() and not Path(out).is_dir():
        raise click.ClickException(f"--out {out} exists and is not a folder")
    try:
        s = run_collect(env_id, episodes, out, seed0=seed0, progress=True)
    except (EnvError, EpisodeError) as e:
        _fail(e)
    click.echo(f"{episodes} episodes of {env_id} (seeds {s['seeds'][0]}..{s['seeds'][1]}) -> {out}: "
               f"expert success {s['expert_success_rate']:.2f}, mean return {s['mean_return']:.1f}, "
               f"mean length {s['mean_length']:.0f}")


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Episode folder made by 'lram collect'.")
@click.option("--preset", "preset_name", default="small", show_default=True, help="Model size preset.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Checkpoint directory to write.")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads (default: torch's choice).")
def train(data_dir, preset_name, out, steps, batch_size, lr, seed, threads):
    """Behaviour-clone an LRAM on expert episodes and save a checkpoint."""
    from lram.model.config import ConfigError, preset
    from lram.model.episodes import EpisodeError
    from lram.model.train import TrainConfig
    from lram.model.train import train as run_train

    try:
        preset(preset_name)
    except ConfigError as e:
        _fail(e)
    cfg = TrainConfig(preset=preset_name, steps=steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                      warmup_steps=min(50, max(1, steps // 10)))
    try:
        _, info = run_train(data_dir, cfg, out=out, progress=True)
    except (EpisodeError, ConfigError) as e:
        _fail(e)
    click.echo(f"trained {preset_name} for {steps} steps in {info['train_seconds']:.0f} s on {info['data_episodes']} "
               f"episodes (seeds {info['data_seeds'][0]}..{info['data_seeds'][1]}): loss {info['initial_loss']:.3f} -> "
               f"{info['final_loss']:.3f}; saved {out}")


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--episodes", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed0", type=click.IntRange(min=0), default=10_000, show_default=True, help="First evaluation seed.")
@click.option("--batch", type=click.IntRange(min=1), default=10, show_default=True, help="Environments stepped together.")
@click.option("--target-return", type=float, default=None, help="Initial return-to-go (default: the checkpoint's).")
@click.option("--json", "as_json", is_flag=True, help="Print the full result (with per-seed results) as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON result to this file.")
@checkpoint_options
def evaluate(checkpoint, episodes, seed0, batch, target_return, as_json, out, env, hydra_config, decode, obs_dim):
    """Closed-loop evaluation of a checkpoint (directory, or reference model.zip with --env) with the recurrent
    step form on unseen seeds, in the simulator of --env (default: the checkpoint's task)."""
    from lram.model.envs import EnvError
    from lram.model.evaluate import EvaluationError
    from lram.model.evaluate import evaluate as run_evaluate

    env_id = env
    model = load_any(checkpoint, env, hydra_config, decode, obs_dim)
    data_seeds = _extra(checkpoint).get("data_seeds")
    try:
        r = run_evaluate(model, episodes=episodes, seed0=seed0, env_id=env_id, batch=batch,
                         target_return=target_return, progress=not as_json, data_seeds=data_seeds)
    except (EvaluationError, EnvError) as e:
        _fail(e)
    r["checkpoint"] = str(checkpoint)
    if out:
        Path(out).write_text(json.dumps(r, indent=2))
    if as_json:
        click.echo(json.dumps(r, indent=2))
    else:
        click.echo(f"{r['env_id']}: success rate {r['success_rate']:.2f} over {episodes} episodes "
                   f"(seeds {r['seeds'][0]}..{r['seeds'][1]}), mean return {r['mean_return']:.1f}, "
                   f"mean length {r['mean_length']:.0f}, {r['seconds']:.0f} s")


def _extra(checkpoint) -> dict:
    try:
        return json.loads((Path(checkpoint) / "config.json").read_text()).get("extra", {}) or {}
    except (OSError, ValueError):
        return {}


def _state_bytes(model) -> int:
    total = 0
    for parts in model.init_state(1).values():
        for val in parts.values():
            for t in val if isinstance(val, tuple) else (val,):
                total += t.numel() * 4  # fp32
    return total


def _describe(model) -> dict:
    cfg = model.config
    return {
        "flavour": cfg.flavour,
        "blocks": cfg.block_types,
        "model": cfg.to_dict(),
        "parameters": model.parameter_count(),
        "weights_mb_fp32": round(model.parameter_count() * 4 / 1e6, 2),
        "state_bytes_per_robot_fp32": _state_bytes(model),
    }


def _fmt(d: dict) -> str:
    return (f"  flavour {d['flavour']}: {d['model']['num_blocks']} blocks x {d['model']['embedding_dim']} "
            f"({' '.join(b[0] for b in d['blocks'])}), encoders {','.join(d['model']['encoders'])}\n"
            f"  parameters {d['parameters']:,} ({d['weights_mb_fp32']} MB fp32)\n"
            f"  recurrent state per robot {d['state_bytes_per_robot_fp32']:,} bytes fp32 "
            f"({d['state_bytes_per_robot_fp32'] / 1e6:.2f} MB)")


@click.command()
@click.argument("checkpoint", required=False, type=click.Path())
@click.option("--preset", "preset_name", default=None, help="Describe a size preset instead of a checkpoint.")
@click.option("--encoders", default="state,image", show_default=True,
              help="With --preset: observation encoders (state, image or state,image; the paper's multi-domain "
                   "models have both).")
@click.option("--json", "as_json", is_flag=True)
@checkpoint_options
def info(checkpoint, preset_name, encoders, as_json, env, hydra_config, decode, obs_dim):
    """Config, parameter count and recurrent state size of a checkpoint (an lram checkpoint directory, or a
    reference-code model.zip with --env TASK) or a preset."""
    import torch

    from lram.model.checkpoint import read_checkpoint_meta
    from lram.model.config import ConfigError, TaskSpec, config_hash, preset
    from lram.model.lram import LRAM

    if (checkpoint is None) == (preset_name is None):
        raise click.UsageError("give either a CHECKPOINT or --preset NAME")
    if checkpoint is not None:
        model = load_any(checkpoint, env, hydra_config, decode, obs_dim)
        meta = {} if is_reference_zip(checkpoint) else read_checkpoint_meta(checkpoint)
        out = {"checkpoint": str(checkpoint), **_describe(model), "task": model.task.to_dict(),
               "config_hash": config_hash(model.config, model.task),
               "extra": {k: v for k, v in meta.get("extra", {}).items() if k != "loss_curve"}}
        if as_json:
            click.echo(json.dumps(out, indent=2))
            return
        t = model.task
        click.echo(f"{checkpoint} ({out['config_hash']})\n{_fmt(out)}")
        click.echo(f"  task {t.name or '?'}: obs {t.obs_kind} {t.obs_shape}, actions {t.action_kind} "
                   f"{t.action_dim or t.action_n} (decode {t.action_decode}), reward scale {t.reward_scale}, "
                   f"target return {t.target_return}")
        for k, v in out["extra"].items():
            click.echo(f"  {k}: {json.dumps(v)}")
        return
    base = preset_name.removesuffix("-mlstm")
    encs = tuple(e.strip() for e in encoders.split(",") if e.strip())
    results = {}
    for name in (base, f"{base}-mlstm"):
        try:
            cfg = preset(name, encoders=encs)
        except ConfigError as e:
            _fail(e)
        task = (TaskSpec(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4,
                         action_low=(-1,) * 4, action_high=(1,) * 4)
                if "state" in encs else TaskSpec(obs_kind="image", obs_shape=(64, 64, 3), action_kind="discrete", action_n=18))
        with torch.device("meta"):  # shapes only: a 206M model is described without allocating it
            model = LRAM(cfg, task)
        results[name] = _describe(model)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for name, d in results.items():
        click.echo(f"preset {name}:\n{_fmt(d)}")
    click.echo("  (the reference training code's checkpoints also carry heads it never uses at inference: "
               "embed_timestep, embed_action_disc, predict_state/return/reward; they are not counted here and "
               "are dropped on loading)")
