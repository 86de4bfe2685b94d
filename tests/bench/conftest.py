"""Fixtures for the benchmark tests: the benchmark task and one small real bench run shared by several tests."""
from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(scope="session")
def shipped_graphs(tmp_path_factory):
    """The shipped trained policy exported to a tmp dir, and its FP16 graph (lram.calibration.fp16):
    (fp32 path, fp16 path)."""
    from lram.calibration.fp16 import write_fp16
    from lram.export.onnx_export import export_onnx
    from lram.model.checkpoint import load_checkpoint

    root = Path(__file__).resolve().parents[2] / "model" / "reference" / "pick-place-v3"
    out = tmp_path_factory.mktemp("artifact-bench")
    fp32 = export_onnx(load_checkpoint(str(root)), out / "pick-place-v3.onnx")
    fp16 = out / "pick-place-v3-fp16.onnx"
    write_fp16(fp32, fp16)
    return Path(fp32), fp16
