"""CPU latency and size on disk of step graphs (FP32 / FP16 / INT8) on ONNX Runtime, batch 1, one thread.

``python -m lram.bench.precision A.onnx B.onnx ...`` prints a table; ``bench_graph`` is what the
pytest-benchmark file and the accuracy report use. Inputs are the graph's own shapes with a non-zero state
(a zero state can take faster paths in some kernels), ``first`` False.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def session(path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def feeds_for(sess, batch: int = 1, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [batch if not isinstance(d, int) else d for d in i.shape]
        if i.type == "tensor(bool)":
            feeds[i.name] = np.zeros(shape, bool)
        elif i.name.endswith(".m"):
            feeds[i.name] = np.full(shape, 0.5, np.float32)
        elif i.name.endswith(".n") and i.name.count(".") == 2 and len(shape) == 2:
            feeds[i.name] = np.ones(shape, np.float32)  # sLSTM normaliser: positive
        else:
            feeds[i.name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return feeds


def bench_graph(path, steps: int = 200, warmup: int = 20, batch: int = 1, threads: int = 1) -> dict:
    sess = session(path, threads)
    feeds = feeds_for(sess, batch)
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    t = np.asarray(times) * 1e3
    return {"path": str(path), "bytes": Path(path).stat().st_size, "median_ms": float(np.median(t)),
            "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()), "steps": steps, "batch": batch}


def table(rows: list[dict], base: dict | None = None) -> str:
    base = base or rows[0]
    out = [f"{'graph':40s} {'MB':>8s} {'median ms':>10s} {'p90 ms':>8s} {'speed-up':>9s} {'size':>6s}"]
    for r in rows:
        out.append(f"{Path(r['path']).name:40s} {r['bytes'] / 1e6:8.2f} {r['median_ms']:10.3f} {r['p90_ms']:8.3f} "
                   f"{base['median_ms'] / r['median_ms']:8.2f}x {r['bytes'] / base['bytes']:6.2f}")
    return "\n".join(out)


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:])
    if not paths:
        print("usage: python -m lram.bench.precision A.onnx [B.onnx ...]  (first is the baseline)")
        return 2
    rows = [bench_graph(p) for p in paths]
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
