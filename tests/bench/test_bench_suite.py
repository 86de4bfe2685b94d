"""pytest-benchmark suite: one environment step of every path, side by side, grouped per preset and batch.

    .venv/bin/python -m pytest tests/bench --benchmark-enable          # tiny + 16M, batch 1 and 16

Without ``--benchmark-enable`` (the project's default addopts disable benchmarks) only the tiny preset runs,
each benchmarked call once, at the small contexts: a smoke test of every path. pytest-benchmark times one
test after another; ``lram bench`` is the interleaved measurement whose ratios the gate uses. No timed
asserts here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lram.bench.latency import (BENCH_TASK, BenchConfig, DTStepper, EagerStepper, OrtStepper,
                                       make_models)
from lram.bench.memory import BandwidthProbe
from lram.export.onnx_export import export_onnx

PRESETS = ["tiny", "16M"]
BATCHES = [1, 16]
POSITIONS = [50, 200, 800, 1600, 10000]
CONTEXTS = [50, 200, 800, 1600]
SMOKE_POSITIONS, SMOKE_CONTEXTS = [50], [50, 200]


def benchmarks_enabled(config) -> bool:
    """pyproject's addopts disable benchmarks; ``--benchmark-enable`` turns them on."""
    return not config.getoption("benchmark_disable") or config.getoption("benchmark_enable")


@pytest.fixture(scope="module")
def enabled(request):
    return benchmarks_enabled(request.config)


@pytest.fixture(scope="module", params=PRESETS)
def setup(request, tmp_path_factory, enabled):
    name = request.param
    if name != "tiny" and not enabled:
        pytest.skip("the 16M benchmarks run only with --benchmark-enable")
    torch.set_num_threads(1)
    positions = POSITIONS if enabled else SMOKE_POSITIONS
    cfg = BenchConfig(presets=(name,), positions=positions, contexts=CONTEXTS if enabled else SMOKE_CONTEXTS)
    lram, dt = make_models(name, cfg)
    d = tmp_path_factory.mktemp(f"bench-{name}")
    chunk = export_onnx(lram, d / "chunk.onnx")
    seq = export_onnx(lram, d / "seq.onnx", mode="sequential")
    st = OrtStepper(chunk, 1)
    _, snaps = st.walk(max(positions), positions)  # states reached by stepping, reused for every batch
    st.close()
    return {"name": name, "lram": lram, "dt": dt, "chunk": chunk, "seq": seq, "snaps": snaps, "cfg": cfg}


def _group(setup, batch, kind):
    return f"{setup['name']}-b{batch}-{kind}"


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("path", ["ort_chunk", "ort_sequential", "torch_eager"])
def test_step_paths(benchmark, setup, batch, path):
    benchmark.group = _group(setup, batch, "paths")
    if path == "torch_eager":
        run = EagerStepper(setup["lram"], batch).step
    else:
        st = OrtStepper(setup["chunk" if path == "ort_chunk" else "seq"], batch)
        st.set_state(setup["snaps"][min(setup["snaps"])])
        run = st.step
    benchmark(run)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("position", POSITIONS)
def test_lram_at_position(benchmark, setup, batch, position):
    if position not in setup["snaps"]:
        pytest.skip("long positions only with --benchmark-enable")
    benchmark.group = _group(setup, batch, "context")
    st = OrtStepper(setup["chunk"], batch)
    st.set_state(setup["snaps"][position])
    out = benchmark(lambda: st.step(carry=False))
    assert np.isfinite(out["action"]).all() and np.isfinite(out["logits"]).all()


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_dt_at_context(benchmark, setup, batch, context):
    if context not in setup["cfg"].contexts:
        pytest.skip("long contexts only with --benchmark-enable")
    benchmark.group = _group(setup, batch, "context")
    d = DTStepper(setup["dt"], batch, context)
    benchmark(d.step)
    assert d.cache.tokens == 3 * context - 1  # rewound: the context stays put


def test_bandwidth_probe(benchmark, enabled):
    """The floor's denominator: one-thread GEMV over 256 MB (32 MB as a smoke test)."""
    probe = BandwidthProbe((256 if enabled else 32) * 2**20)
    benchmark.group = "memory"
    benchmark(probe)
    probe.close()


def test_task_is_the_spec_one():
    assert BENCH_TASK["obs_shape"] == (39,) and BENCH_TASK["reward_scale"] == 200.0
