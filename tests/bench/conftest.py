"""Fixtures for the benchmark tests: the benchmark task and one small real bench run shared by several tests."""
from __future__ import annotations

import pytest
import torch

from lram.bench.latency import BENCH_TASK, BenchConfig
from lram.model.config import TaskSpec

torch.set_num_threads(1)


@pytest.fixture
def bench_task() -> TaskSpec:
    return TaskSpec(**BENCH_TASK)


@pytest.fixture(scope="session")
def tiny_report():
    """One small bench run (tiny, batch 1, position/context 20), shared by the report and gate tests."""
    from lram.bench.latency import run_bench

    cfg = BenchConfig(presets=("tiny",), batches=(1,), positions=(20, 60), contexts=(20,), group_seconds=0.3,
                      min_rounds=6, max_rounds=40)
    return run_bench(cfg, progress=None, command="(test)")
