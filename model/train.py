"""Behaviour cloning of an LRAM on expert episodes.

Parallel forward over windows of C timesteps (s_t, R_t, r_t tokens), cross-entropy on the discretised
actions read at R_t, AdamW with linear warm-up and cosine decay, gradient clipping. Deterministic given the
seed (and the thread count). The task's ``target_return`` is the mean expert return and its
``obs_low``/``obs_high`` the data range widened by a generous margin.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .action_head import action_loss, encode_actions
from .checkpoint import save_checkpoint
from .config import TaskSpec, preset
from .episodes import Episode, WindowDataset, load_episodes
from .lram import LRAM


@dataclass
class TrainConfig:
    preset: str = "small"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (None: leave as is)


def observation_range(episodes: list[Episode], scale: float = 2.0, pad: float = 1.0):
    """Per-dim magnitude bound: |x| <= scale x max|data| + pad, as symmetric [low, high].

    The runtime rejects observations outside it, so it is a guard against sensor faults (garbage values, unit
    mix-ups), not a detector of unfamiliar states: generous on purpose, and symmetric because a state the
    experts never visited is not a fault. Measured on the shipped pick-place policy: a data range widened by
    0.5 x range rejected 25% of its ticks, and 1 x range + 1 still 6%: the object's quaternion leaves the
    experts' narrow range (w near 1) once the policy handles it, and swings to negative w."""
    s = np.concatenate([e.states for e in episodes]).astype(np.float64)
    bound = scale * np.abs(s).max(0) + pad
    return tuple((-bound).tolist()), tuple(bound.tolist())


def task_from_data(episodes: list[Episode], meta: dict) -> TaskSpec:
    task = TaskSpec.from_dict(meta["task"])
    good = [e for e in episodes if e.success] or episodes
    lo, hi = observation_range(episodes)
    return replace(task, target_return=float(np.mean([e.ret for e in good])), obs_low=lo, obs_high=hi)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def train(data_dir: str | Path, cfg: TrainConfig, out: str | Path | None = None, progress: bool = False,
          episodes: list[Episode] | None = None, meta: dict | None = None) -> tuple[LRAM, dict]:
    """Train on the episodes in ``data_dir`` (or the given ``episodes`` + ``meta``); save to ``out`` if given."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if episodes is None:
        episodes, meta = load_episodes(data_dir)
    task = task_from_data(episodes, meta)
    model_cfg = preset(cfg.preset, encoders=(task.obs_kind,))
    torch.manual_seed(cfg.seed)
    model = LRAM(model_cfg, task)
    model.train()
    data = WindowDataset(episodes, context=model_cfg.context_timesteps)
    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    losses = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, desc=f"train {cfg.preset}", unit="step")
    t0 = time.time()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        b = data.sample(cfg.batch_size, gen)
        logits = model(b["obs"], b["rtg"], b["rewards"])
        loss = action_loss(logits, encode_actions(b["actions"], task), b["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    seconds = time.time() - t0
    tail = losses[-max(1, min(50, len(losses) // 5)):] if losses else [float("nan")]
    every = max(1, len(losses) // 50)
    info = {
        "kind": "behaviour_cloning",
        "env_id": meta.get("env_id"),
        "data_dir": str(data_dir) if data_dir is not None else None,
        "data_seeds": meta.get("seeds"),
        "data_episodes": len(episodes),
        "data_transitions": int(sum(len(e) for e in episodes)),
        "expert_success_rate": meta.get("expert_success_rate"),
        "windows": len(data),
        "train": asdict(cfg),
        "steps": cfg.steps,
        "initial_loss": losses[0] if losses else None,
        "final_loss": float(np.mean(tail)),
        "loss_curve": [[i, round(float(np.mean(losses[i:i + every])), 4)] for i in range(0, len(losses), every)],
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    if out is not None:
        save_checkpoint(model, out, extra=info)
    return model, info
