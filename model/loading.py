"""Load a policy from what a user has: this project's checkpoint directory, or a reference-code model.zip."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint
from .lram import LRAM


def load_model(checkpoint: str | Path, hydra_config=None, env: str | None = None) -> LRAM:
    """Our checkpoint directory, or a reference-code model.zip (+ its Hydra config and the task's env id)."""
    if str(checkpoint).endswith(".zip"):
        if not env:
            raise CheckpointError("a reference model.zip carries no task: name it with --env (e.g. metaworld:pick-place-v3)")
        from .envs import make_env
        from .reference_checkpoint import load_reference_zip

        _, task = make_env(env)
        return load_reference_zip(checkpoint, hydra_config, task)
    return load_checkpoint(checkpoint)
