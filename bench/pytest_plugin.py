"""pytest plugin (entry point ``pytest11: lram``): the ``lram_latency`` fixture runs the measurement and gates
of ``lram bench ARTIFACT`` inside a user's own test suite.

    def test_policy_latency(lram_latency):
        r = lram_latency("artifacts/policy.onnx", batch=(1, 4), hz=50, baseline="benchmarks/policy.baseline.json")
        assert r.fit["robots"] >= 4

- the figures are those of ``lram bench ARTIFACT`` (``r.figures``, ``r.fit``, ``r.report``);
- ``baseline=PATH`` checks it like ``--check`` (``ratios_only=True`` for shared CI); with
  ``pytest --lram-write-baseline`` it writes PATH instead (tolerances from the run-to-run noise, or
  ``tolerance=``);
- ``NAME.budget.json`` beside the artifact is checked like the CLI does (``budget=False`` skips it);
- a failed gate fails the test with the gate's table, naming the figure; a baseline from another machine
  with absolute figures fails it with the refusal.

pytest-benchmark: ``lram_latency.benchmark(path, batch=1, position=100)`` times the same stepper (state at the
position, not carried) through the ``benchmark`` fixture's pedantic mode, so ``--benchmark-save`` /
``--benchmark-compare`` / ``--benchmark-compare-fail=median:10%`` work as for any other benchmark.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("lram", "lram latency gates")
    group.addoption("--lram-write-baseline", action="store_true",
                    help="lram_latency: write the baselines the tests name instead of checking them")
    group.addoption("--lram-seconds", type=float, default=None,
                    help="lram_latency: seconds of interleaved rounds per batch size and run (default: the test's)")


@dataclass
class LatencyResult:
    report: dict
    gates: list  # [(what, GateResult)]

    @property
    def figures(self) -> dict:
        return self.report["figures"]

    @property
    def fit(self) -> dict | None:
        return self.report.get("fit")

    @property
    def ok(self) -> bool:
        return all(r.ok for _, r in self.gates)

    def format(self) -> str:
        from .artifact import markdown

        return markdown(self.report) + "\n".join(r.format(what) for what, r in self.gates)


class LatencyFixture:
    def __init__(self, request):
        self.request = request

    def __call__(self, artifact, batch=(1,), positions=(100,), hz=None, margin=0.6, seconds=1.0, runs=None,
                 against=None, baseline=None, ratios_only=False, tolerance=None, budget=True, backend="auto", threads=1,
                 warmup=20, floor=True, check=True, slowdown=1.0) -> LatencyResult:
        from . import artifact_gate, gate
        from .artifact import ArtifactConfig, measure

        config = self.request.config
        write = baseline is not None and config.getoption("lram_write_baseline")
        base = None
        if baseline is not None and not write:
            base = artifact_gate.load_baseline(baseline)
            if against is None and base.get("against") and base.get("ratios"):
                against = base["against"]["path"]
            runs = runs or base["runs"]
        bud = None
        budget_file = artifact_gate.budget_path(artifact) if budget is True else Path(budget) if budget else None
        if budget_file is not None and budget_file.is_file():
            bud = artifact_gate.load_budget(budget_file)
        cfg = ArtifactConfig(batches=(batch,) if isinstance(batch, int) else tuple(batch),
                             positions=(positions,) if isinstance(positions, int) else tuple(positions),
                             backend=backend, threads=threads, warmup=warmup,
                             seconds=config.getoption("lram_seconds") or seconds,
                             runs=runs or (3 if write else 1), hz=hz, margin=margin,
                             against=str(against) if against else None, floor=floor, slowdown=slowdown)
        gates = []
        try:
            report = measure(artifact, cfg)
            if write:
                Path(baseline).parent.mkdir(parents=True, exist_ok=True)
                Path(baseline).write_text(json.dumps(artifact_gate.make_baseline(report, tolerance, ratios_only), indent=1))
            if base is not None:
                gates += artifact_gate.check_baseline(report, base, ratios_only)
            if bud is not None:
                gates.append(("budget", artifact_gate.check_budget(report, bud, f"the budget {budget_file}")))
        except gate.GateError as e:  # a refusal or a malformed baseline: the test cannot pass
            pytest.fail(str(e), pytrace=False)
        result = LatencyResult(report, gates)
        if check and not result.ok:
            pytest.fail("latency gate failed\n" + "\n".join(r.format(w) for w, r in gates), pytrace=False)
        return result

    def benchmark(self, artifact, batch: int = 1, position: int = 100, rounds: int = 200, warmup_rounds: int = 20,
                  backend: str = "auto", threads: int = 1, slowdown: float = 1.0):
        """Time the artifact's step through pytest-benchmark's ``benchmark.pedantic``."""
        from .artifact import Artifact, Stepper

        bm = self.request.getfixturevalue("benchmark")  # needs pytest-benchmark
        art = Artifact(artifact, backend, threads)
        try:
            state = Stepper(art, 1).advance([position])[position]
            stepper = Stepper(art, batch, slowdown=slowdown)
            stepper.set_state(state)
            bm.extra_info.update({"artifact": str(artifact), "backend": art.backend.name, "batch": batch,
                                  "position": position, "precision": art.manifest.precision})
            bm.group = bm.group or f"lram {Path(artifact).name}"
            bm.pedantic(stepper.step, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
            return bm
        finally:
            art.close()


@pytest.fixture
def lram_latency(request) -> LatencyFixture:
    return LatencyFixture(request)
