"""The task a reference-code checkpoint serves: the registry's spec (lram.model.tasks), with what the run's
Hydra config says about it taking precedence.

The Hydra config may state a reward scale (a number, or one per domain) and a target return (a number, or one
per task), under keys named ``reward_scale`` / ``rew_scale`` and ``target_return`` anywhere in the tree; where
it does, its value is used instead of the registry's, and said so. Where it lists the run's tasks (``envid``,
``env_names``, ``eval_env_names``, ``tasks``), a task outside that list is a disagreement and an error: the
checkpoint was not trained for it.
"""
from __future__ import annotations

from collections.abc import Mapping

from .config import TaskSpec
from .tasks import TaskError, TaskInfo, lookup

_SCALE_KEYS = ("reward_scale", "rew_scale")
_TARGET_KEYS = ("target_return",)
_TASK_LIST_KEYS = ("envid", "env_names", "eval_env_names", "tasks")
_DOMAIN_ALIASES = {"metaworld": ("metaworld", "mt50", "mt40", "cw10", "cw20", "mt"), "dmcontrol": ("dmcontrol", "dmc"),
                   "atari": ("atari",), "procgen": ("procgen",), "composuite": ("composuite",),
                   "mimicgen": ("mimicgen",), "gym": ("gym",)}


class HydraTaskError(TaskError):
    """The Hydra config and the chosen task disagree."""


def _find_all(node, keys: tuple, path: str = ""):
    """Every (dotted path, value) whose key is in ``keys``, depth first."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if k in keys:
                yield p, v
            yield from _find_all(v, keys, p)


def _names_of(info: TaskInfo) -> set:
    names = {info.id, info.name}
    if info.domain == "dmcontrol":
        names.add(info.name.replace("-", "_"))
    return names


def _pick(value, info: TaskInfo, per: str):
    """A number, or the entry of a per-domain / per-task mapping that belongs to ``info``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        keys = _DOMAIN_ALIASES.get(info.domain, (info.domain,)) if per == "domain" else ()
        for k in (*_names_of(info), *keys):
            if k in value and isinstance(value[k], (int, float)) and not isinstance(value[k], bool):
                return float(value[k])
    return None


def hydra_task_values(cfg: Mapping, info: TaskInfo) -> tuple[dict, list]:
    """{"reward_scale": (value, path), "target_return": (value, path)} found in ``cfg`` for ``info``, and notes.
    Raises HydraTaskError when the config's task list does not hold the task, or states two different values."""
    found, notes = {}, []
    for field, keys, per in (("reward_scale", _SCALE_KEYS, "domain"), ("target_return", _TARGET_KEYS, "task")):
        hits = [(p, v) for p, raw in _find_all(cfg, keys) if (v := _pick(raw, info, per)) is not None]
        values = {v for _, v in hits}
        if len(values) > 1:
            shown = ", ".join(f"{p} = {v:g}" for p, v in hits)
            raise HydraTaskError(f"the Hydra config states different {field.replace('_', ' ')}s for {info.id} ({shown}); "
                                 "fix the config or drop --hydra-config")
        if hits:
            found[field] = (hits[0][1], hits[0][0])
    for path, raw in _find_all(cfg, _TASK_LIST_KEYS):
        listed = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else None
        if not listed or not all(isinstance(x, str) for x in listed):
            continue
        if any("${" in x for x in listed):
            notes.append(f"config.yaml {path} is an unresolved interpolation: the task list is not checked")
            continue
        if not _names_of(info) & set(listed):
            shown = ", ".join(listed[:5]) + (" ..." if len(listed) > 5 else "")
            raise HydraTaskError(f"--env {info.id} is not among the tasks of the Hydra config ({path}: {shown}); "
                                 "pick one of those tasks, or drop --hydra-config if the run is meant for another")
    return found, notes


def reference_task(task_id: str, hydra_cfg: Mapping | None = None, action_decode: str = "reference",
                   obs_dim: int | None = None) -> tuple[TaskSpec, list]:
    """The TaskSpec for serving ``task_id`` with a reference checkpoint, and notes on where its values came from."""
    info = lookup(task_id)
    notes = [f"task {info.id}: {info.obs_kind} {info.obs_shape or '(size from --obs-dim)'}, {info.action_kind} "
             f"{info.action_size}, from the task registry ({info.source})"]
    found = {}
    if hydra_cfg is not None:
        found, more = hydra_task_values(hydra_cfg, info)
        notes += more
        for field, (value, path) in found.items():
            default = getattr(info, field)
            same = default is not None and abs(default - value) <= 1e-9 * max(1.0, abs(value))
            notes.append(f"{field.replace('_', ' ')} {value:g} from config.yaml {path}"
                         + ("" if same else f" (the registry says {default if default is None else f'{default:g}'}; "
                                            "the Hydra config wins)"))
    spec = info.spec(action_decode, obs_dim=obs_dim, target_return=found.get("target_return", (None,))[0],
                     reward_scale=found.get("reward_scale", (None,))[0])
    return spec, notes
