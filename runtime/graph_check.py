"""Refuse a graph whose inputs/outputs disagree with its manifest, before the first step, with a clear error.

A mismatch (an exporter that renamed a state tensor, an fp16 graph with an fp32 manifest, a manifest that
says 16 state dims where the graph has 32, a ``--batch 7`` graph loaded for 3 robots) would otherwise
surface as an obscure backend error mid-run, or worse, as silently wrong recurrent state. So names, dtypes
and full shapes are compared, the manifest's own parts (state, observation, action) must agree with its
tensor list, and a fixed batch must equal the number of robots.
"""
from __future__ import annotations

from dataclasses import dataclass

from .manifest import BATCH, Manifest, ManifestError


@dataclass(frozen=True)
class IOSpec:
    """What a backend reports about one graph input or output."""

    name: str
    dtype: str  # numpy dtype name
    rank: int | None  # None when the backend cannot tell
    shape: tuple | None = None  # ints, None (or a name) for a dynamic dimension; None when the backend cannot tell


def _fixed(d) -> bool:
    return isinstance(d, int) and not isinstance(d, bool)


def _shape_problems(kind: str, name: str, declared: list, actual: tuple) -> list:
    problems = []
    for axis, (m, g) in enumerate(zip(declared, actual)):
        if axis == 0:
            if m == BATCH and _fixed(g):
                problems.append(f"{kind} '{name}': graph has a fixed batch of {g}, the manifest says dynamic ({BATCH!r})")
            elif _fixed(m) and _fixed(g) and m != g:
                problems.append(f"{kind} '{name}': graph batch {g}, manifest batch {m}")
        elif _fixed(m) and _fixed(g) and m != g:
            problems.append(f"{kind} '{name}': graph shape {list(actual)}, manifest shape {list(declared)} "
                            f"(dimension {axis}: {g} vs {m})")
    return problems


def _manifest_problems(manifest: Manifest) -> list:
    """The manifest's state/observation/action descriptions must agree with its own tensor list."""
    problems = []
    ins = {t.name: t for t in manifest.inputs}
    outs = {t.name: t for t in manifest.outputs}
    for st in manifest.state:
        for t in (ins.get(st.input), outs.get(st.output)):
            if t is not None and (list(t.shape[1:]) != list(st.shape) or t.dtype != st.dtype):
                problems.append(f"state '{st.name}' is {st.dtype} {list(st.shape)} per robot, but tensor '{t.name}' "
                                f"is {t.dtype} {list(t.shape)}")
    obs, obs_t = manifest.observation, ins.get("obs")
    if obs_t is not None and isinstance(obs, dict) and "shape" in obs:
        want, tail = list(obs["shape"]), list(obs_t.shape[1:])
        # a state observation may be zero-padded to a wider graph input (the paper's 204)
        padded = obs.get("kind", "state") == "state" and len(tail) == 1 == len(want) and _fixed(tail[0]) \
            and tail[0] > want[0]
        if tail != want and not padded:
            problems.append(f"observation shape {want}, but input 'obs' is {list(obs_t.shape)}")
    act, act_t = manifest.action, outs.get("action")
    if act_t is not None and isinstance(act, dict):
        if act.get("kind") == "discrete":
            if len(act_t.shape) != 1:
                problems.append(f"a discrete action is one index per robot, but output 'action' is {list(act_t.shape)}")
        elif "shape" in act:
            if list(act_t.shape[1:]) != list(act["shape"]):
                problems.append(f"action shape {list(act['shape'])}, but output 'action' is {list(act_t.shape)}")
            size = 1
            for d in act["shape"]:
                size *= int(d)
            for bound in ("low", "high"):
                v = act.get(bound)
                if isinstance(v, list) and len(v) not in (1, size):
                    problems.append(f"action {bound} has {len(v)} values for an action of size {size}")
    for name, want in (("rtg", [BATCH, 1]), ("prev_reward", [BATCH, 1]), ("first", [BATCH])):
        t = ins.get(name)
        if t is not None and len(t.shape) != len(want):
            problems.append(f"input '{name}' must be [batch{', 1' if len(want) == 2 else ''}], the manifest says {list(t.shape)}")
        elif t is not None and len(want) == 2 and _fixed(t.shape[1]) and t.shape[1] != 1:
            problems.append(f"input '{name}' must be [batch, 1], the manifest says {list(t.shape)}")
    return problems


def check_graph_matches(manifest: Manifest, inputs: list[IOSpec], outputs: list[IOSpec],
                        n_robots: int | None = None) -> None:
    problems = []
    batches = set()
    for kind, declared, actual in (("input", manifest.inputs, inputs), ("output", manifest.outputs, outputs)):
        have = {s.name: s for s in actual}
        want = {t.name: t for t in declared}
        for name in sorted(set(want) - set(have)):
            problems.append(f"{kind} '{name}' is in the manifest but not in the graph")
        for name in sorted(set(have) - set(want)):
            problems.append(f"{kind} '{name}' is in the graph but not in the manifest")
        for name in sorted(set(want) & set(have)):
            t, s = want[name], have[name]
            if t.dtype != s.dtype:
                problems.append(f"{kind} '{name}': graph dtype {s.dtype}, manifest {t.dtype}")
            rank = s.rank if s.rank is not None else (None if s.shape is None else len(s.shape))
            if rank is not None and rank != len(t.shape):
                problems.append(f"{kind} '{name}': graph rank {rank}, manifest rank {len(t.shape)} {t.shape}")
            elif s.shape is not None:
                problems += _shape_problems(kind, name, list(t.shape), tuple(s.shape))
                if s.shape and _fixed(s.shape[0]):
                    batches.add(s.shape[0])
    problems += _manifest_problems(manifest)
    # the state list must be the state_in/state_out pairs, or the runtime would carry the wrong tensors
    in_names = {t.name for t in manifest.inputs}
    out_names = {t.name for t in manifest.outputs}
    for st in manifest.state:
        if st.input not in in_names or st.output not in out_names:
            problems.append(f"state '{st.name}' needs both {st.input} and {st.output} in the manifest's inputs/outputs")
    for required in ("obs", "rtg", "prev_reward", "first"):
        if required not in in_names:
            problems.append(f"required input '{required}' is missing from the manifest")
    if "action" not in out_names:
        problems.append("required output 'action' is missing from the manifest")
    if len(batches) > 1:
        problems.append(f"the graph's tensors disagree on the batch size: {sorted(batches)}")
    elif batches and n_robots is not None and n_robots not in batches:
        b = batches.pop()
        problems.append(f"the graph has a fixed batch of {b}, it cannot run {n_robots} robots "
                        f"(load it for {b}, or export with --batch {n_robots} or --batch dynamic)")
    if problems:
        raise ManifestError("graph and manifest disagree:\n  " + "\n  ".join(problems))
