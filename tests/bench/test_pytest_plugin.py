"""The ``lram_latency`` fixture (pytest11 entry point) in a temporary pytest project (pytester), alone and with
pytest-benchmark's compare."""
from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")

PROJECT = '''
import os
ARTIFACT = {artifact!r}
SLOW = float(os.environ.get("LRAM_TEST_SLOWDOWN", "1"))


def test_policy_latency(lram_latency):
    r = lram_latency(ARTIFACT, batch=(1,), positions=(10,), hz=50, seconds=0.2, warmup=5,
                     baseline="latency/policy.baseline.json", tolerance=3.0, floor=False, slowdown=SLOW)
    assert r.figures["b1@10"]["p99_ms"] >= r.figures["b1@10"]["p50_ms"] > 0
    assert r.fit["period_ms"] == 20.0 and r.fit["robots"] >= 0


def test_with_pytest_benchmark(lram_latency):
    bm = lram_latency.benchmark(ARTIFACT, batch=1, position=10, rounds=60, warmup_rounds=5, slowdown=SLOW)
    assert bm.extra_info["precision"] == "fp32"
'''


@pytest.fixture
def project(pytester, shipped_graphs, monkeypatch):
    monkeypatch.delenv("LRAM_TEST_SLOWDOWN", raising=False)
    pytester.makepyfile(test_latency=PROJECT.format(artifact=str(shipped_graphs[0])))
    return pytester


def test_fixture_writes_checks_and_fails_a_slower_step(project, monkeypatch):
    written = project.runpytest("-k", "policy_latency", "--lram-write-baseline")
    written.assert_outcomes(passed=1)
    assert (project.path / "latency" / "policy.baseline.json").is_file()
    project.runpytest("-k", "policy_latency").assert_outcomes(passed=1)
    monkeypatch.setenv("LRAM_TEST_SLOWDOWN", "10")
    slow = project.runpytest("-k", "policy_latency")
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(["*latency gate failed*", "FAIL: * absolute figures regressed*b1@10.p50_ms*"])


def test_fixture_feeds_pytest_benchmark_compare(project, monkeypatch):
    storage = f"file://{project.path / 'bm'}"
    saved = project.runpytest("-k", "pytest_benchmark", "--benchmark-autosave", f"--benchmark-storage={storage}")
    saved.assert_outcomes(passed=1)
    same = project.runpytest("-k", "pytest_benchmark", f"--benchmark-storage={storage}", "--benchmark-compare",
                             "--benchmark-compare-fail=median:200%")
    same.assert_outcomes(passed=1)
    monkeypatch.setenv("LRAM_TEST_SLOWDOWN", "10")
    slow = project.runpytest("-k", "pytest_benchmark", f"--benchmark-storage={storage}", "--benchmark-compare",
                             "--benchmark-compare-fail=median:200%")
    assert slow.ret != 0
    assert "Field 'median' has failed PercentageRegressionCheck" in "\n".join(slow.outlines + slow.errlines)
