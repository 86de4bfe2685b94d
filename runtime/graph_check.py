"""Refuse a graph whose inputs/outputs disagree with its manifest, before the first step, with a clear error.

A mismatch (an exporter that renamed a state tensor, an fp16 graph with an fp32 manifest) would otherwise
surface as an obscure backend error mid-run, or worse, as silently wrong recurrent state.
"""
from __future__ import annotations

from dataclasses import dataclass

from .manifest import Manifest, ManifestError


@dataclass(frozen=True)
class IOSpec:
    """What a backend reports about one graph input or output."""

    name: str
    dtype: str  # numpy dtype name
    rank: int | None  # None when the backend cannot tell


def check_graph_matches(manifest: Manifest, inputs: list[IOSpec], outputs: list[IOSpec]) -> None:
    problems = []
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
            if s.rank is not None and s.rank != len(t.shape):
                problems.append(f"{kind} '{name}': graph rank {s.rank}, manifest rank {len(t.shape)} {t.shape}")
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
    if problems:
        raise ManifestError("graph and manifest disagree:\n  " + "\n  ".join(problems))
