"""CPU latency and size on disk of FP32 vs FP16 vs INT8 (static) vs INT8 (weights only) step graphs on ONNX
Runtime, batch 1, one thread, for the tiny and the 16M size (perturbed weights; latency does not care).

Runs only with ``--benchmark-enable`` (building the 16M graphs takes ~30 s); no timed asserts:
    .venv/bin/python -m pytest tests/calibration/test_bench_precision.py --benchmark-enable
The same table from the command line: python -m lram.bench.precision A.onnx B.onnx ...
"""
from __future__ import annotations

import pytest

from .conftest import build_graph

METAWORLD_TASK = dict(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4,
                      action_low=(-1.0,) * 4, action_high=(1.0,) * 4, reward_scale=200.0, target_return=1000.0,
                      name="metaworld:pick-place-v3")


@pytest.fixture(scope="module", params=["tiny", "16M"])
def graphs(request, tmp_path_factory):
    if not request.config.getoption("benchmark_enable", False):
        pytest.skip("benchmarks run only with --benchmark-enable")
    from lram.calibration.fp16 import write_fp16
    from lram.calibration.int8 import write_int8
    from lram.calibration.record import record

    d = tmp_path_factory.mktemp(f"bench-{request.param}")
    fp32 = build_graph(d / "fp32.onnx", request.param, task=METAWORLD_TASK)
    write_fp16(fp32, d / "fp16.onnx")
    cs = record(fp32, episodes=2, samples=48, max_steps=40)  # ranges only matter for accuracy, not latency
    small = 1024 if request.param == "tiny" else 4096
    write_int8(fp32, d / "int8.onnx", cs, min_elements=small)
    write_int8(fp32, d / "int8w.onnx", None, mode="weights", min_elements=small)
    return request.param, d


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int8w"])
def test_step_latency(benchmark, graphs, precision):
    from lram.bench.precision import feeds_for, session

    size, d = graphs
    path = d / f"{precision}.onnx"
    sess = session(path)
    feeds = feeds_for(sess)
    for _ in range(10):
        sess.run(None, feeds)
    benchmark.extra_info.update(size=size, precision=precision, mbytes=round(path.stat().st_size / 1e6, 2))
    benchmark(sess.run, None, feeds)
