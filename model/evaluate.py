"""Closed-loop evaluation in the simulator with the model's RECURRENT step form.

Several environments run in lock-step as one batch; each row keeps its own recurrent state. At a reset the
row is stepped with ``first=True`` (zero state, no reward token); afterwards it feeds the previous reward and
R_t = target_return - rewards collected so far. A finished row is reset with the next seed. Seeds should be
disjoint from the data seeds (data 0..N-1, evaluation 10_000+ by convention).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .lram import LRAM

EVAL_SEED0 = 10_000


class EvaluationError(ValueError):
    """The checkpoint and the environment do not fit together."""


def evaluate(model: LRAM, episodes: int = 50, seed0: int = EVAL_SEED0, env_id: str | None = None,
             batch: int = 10, target_return: float | None = None, progress: bool = False,
             threads: int = 1, data_seeds: tuple | list | None = None) -> dict:
    from .envs import make_env

    torch.set_num_threads(threads)  # the simulator shares the cores
    env_id = env_id or model.task.name
    if not env_id:
        raise EvaluationError("the checkpoint's task names no environment; pass env_id")
    target = model.task.target_return if target_return is None else target_return
    if target is None:
        raise EvaluationError("the checkpoint has no target_return; pass one")
    seeds = list(range(seed0, seed0 + episodes))
    if data_seeds:
        lo, hi = data_seeds
        clash = [s for s in seeds if lo <= s <= hi]
        if clash:
            raise EvaluationError(f"evaluation seeds {clash[0]}..{clash[-1]} overlap the training data seeds {lo}..{hi}")
    n = max(1, min(batch, episodes))
    envs = []
    for _ in range(n):
        env, task = make_env(env_id)
        if tuple(task.obs_shape) != tuple(model.task.obs_shape) or task.action_dim != model.task.action_dim:
            raise EvaluationError(f"{env_id} observes {task.obs_shape} / acts in {task.action_dim} dims; the model "
                                  f"expects {model.task.obs_shape} / {model.task.action_dim}")
        envs.append(env)

    queue = iter(seeds)
    slot_seed = [None] * n
    obs = np.zeros((n, *model.task.obs_shape), np.float32)
    rtg = np.zeros(n, np.float32)
    prev_r = np.zeros(n, np.float32)
    ret = np.zeros(n, np.float64)
    first = np.ones(n, bool)

    def start(i: int) -> bool:
        seed = next(queue, None)
        slot_seed[i] = seed
        if seed is None:
            return False
        obs[i] = envs[i].reset(seed)
        rtg[i], prev_r[i], ret[i], first[i] = target, 0.0, 0.0, True
        return True

    for i in range(n):
        start(i)
    results = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=episodes, desc=f"evaluate {env_id}", unit="ep")
    t0, env_steps = time.time(), 0
    state = model.init_state(n)
    model.eval()
    while any(s is not None for s in slot_seed):
        logits, state = model.step(torch.from_numpy(obs), torch.from_numpy(rtg), torch.from_numpy(prev_r),
                                   torch.from_numpy(first), state)
        actions = model.decode(logits).numpy()
        first[:] = False
        for i in range(n):
            if slot_seed[i] is None:
                continue
            res = envs[i].step(actions[i])
            env_steps += 1
            ret[i] += res.reward
            rtg[i] -= res.reward
            prev_r[i] = res.reward
            obs[i] = res.obs
            if res.done:
                results.append({"seed": slot_seed[i], "success": bool(res.success), "return": round(float(ret[i]), 3),
                                "length": envs[i].t})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(success=f"{np.mean([r['success'] for r in results]):.2f}")
                start(i)
    if bar is not None:
        bar.close()
    for env in envs:
        env.close()
    results.sort(key=lambda r: r["seed"])
    seconds = time.time() - t0
    return {
        "env_id": env_id,
        "episodes": episodes,
        "seeds": [seeds[0], seeds[-1]],
        "target_return": float(target),
        "success_rate": float(np.mean([r["success"] for r in results])),
        "mean_return": float(np.mean([r["return"] for r in results])),
        "mean_length": float(np.mean([r["length"] for r in results])),
        "env_steps": env_steps,
        "seconds": round(seconds, 1),
        "per_seed": results,
    }
