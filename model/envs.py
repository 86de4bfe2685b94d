"""Simulators for training, evaluation and verification: runtime/sim.py's environments (the one copy of the
environment code, shared with ``lram run``) plus the task's spec from the registry.

``make_env`` returns the env and the task registry's :class:`TaskSpec` (lram.model.tasks: shapes, action bounds,
reward scale), checked against the simulator's own spaces; the ``target_return`` and ``obs_low``/``obs_high`` of
a trained checkpoint come from expert data in training (Meta-World's declared goal bounds are wrong, so they are
never read here). Commands that only need a task's spec (export, verify's adversarial phase, info) use the
registry and never create a simulator. gymnasium / metaworld are imported lazily, when a simulator is made.
"""
from __future__ import annotations

from dataclasses import replace

from lram.runtime.sim import EnvError, SimEnv, make_sim

from .config import TaskSpec


def make_env(env_id: str, seed: int = 0) -> tuple[SimEnv, TaskSpec]:
    """``env_id`` -> (env, task spec without target_return / observation range). Only ids with a simulator
    here run."""
    from .tasks import TASKS, TaskError, lookup

    try:
        info = lookup(env_id)
    except TaskError as e:
        raise EnvError(f"unknown environment: {e}") from None
    if info.simulator is None:
        runnable = sorted(t.simulator for t in TASKS.values() if t.simulator and not t.simulator.startswith("metaworld"))
        alt = f"; its Meta-World v3 twin metaworld:{info.name[:-3]}-v3 runs here" if info.id.endswith("-v2") else ""
        raise EnvError(f"{env_id} has no simulator in this project (simulators: metaworld:<task>-v3, "
                       f"{', '.join(runnable)}){alt}; export and verify's adversarial phase need none")
    env = make_sim(info.simulator, seed)
    spec = replace(info.spec(), target_return=None)  # a trained checkpoint's own target comes from its data
    if (spec.obs_shape, spec.action_low, spec.action_high) != (env.obs_shape, env.action_low or (), env.action_high or ()):
        env.close()
        raise EnvError(f"{env_id}: the simulator declares obs {env.obs_shape}, actions in [{env.action_low}, "
                       f"{env.action_high}] but the task registry says {spec.obs_shape}, [{spec.action_low}, "
                       f"{spec.action_high}]")
    return env, spec
