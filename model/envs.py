"""Simulators for training, evaluation and verification: runtime/sim.py's environments plus the TaskSpec the
model needs (action bounds from the simulator, the domain's reward scale).

The task's ``target_return`` and ``obs_low``/``obs_high`` come from expert data in training (Meta-World's
declared goal bounds are wrong, so they are never read here). gymnasium / metaworld are imported lazily.
"""
from __future__ import annotations

from lram.runtime.sim import EnvError, SimEnv, make_sim

from .config import REWARD_SCALES, TaskSpec

GYM_REWARD_SCALES = {"Pendulum-v1": 100.0}
KNOWN_ENVS = ("metaworld:pick-place-v3", "metaworld:reach-v3", "metaworld:button-press-v3", "gym:Pendulum-v1")


def task_of(env: SimEnv) -> TaskSpec:
    kind, _, name = env.env_id.partition(":")
    scale = REWARD_SCALES["metaworld"] if kind == "metaworld" else GYM_REWARD_SCALES.get(name)
    if scale is None:
        raise EnvError(f"no reward scale is known for {env.env_id!r}; known: {', '.join(KNOWN_ENVS)}")
    if env.action_n is not None:
        return TaskSpec(obs_kind="state", obs_shape=env.obs_shape, action_kind="discrete", action_n=env.action_n,
                        reward_scale=scale, name=env.env_id)
    return TaskSpec(obs_kind="state", obs_shape=env.obs_shape, action_kind="continuous",
                    action_dim=len(env.action_low), action_low=env.action_low, action_high=env.action_high,
                    reward_scale=scale, name=env.env_id)


def make_env(env_id: str, seed: int = 0) -> tuple[SimEnv, TaskSpec]:
    """``env_id`` -> (env, task spec without target_return / observation range)."""
    kind, _, name = env_id.partition(":")
    if kind == "gym" and name not in GYM_REWARD_SCALES:
        raise EnvError(f"unknown environment {env_id!r}; known: {', '.join(KNOWN_ENVS)}")
    env = make_sim(env_id, seed)
    try:
        return env, task_of(env)
    except EnvError:
        env.close()
        raise
