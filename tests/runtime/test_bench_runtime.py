"""The runtime's overhead per step against a bare ``session.run`` on the same graph.

Runs only with ``--benchmark-enable`` (the project disables benchmarks by default); no timed asserts:
    .venv/bin/python -m pytest tests/runtime/test_bench_runtime.py --benchmark-enable
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest


N = [1, 16]


def _obs(n):
    return np.tile(np.array([[1.0, 0.0, 0.5]], np.float32), (n, 1))


@pytest.mark.parametrize("n", N)
def test_bare_session_run(benchmark, pendulum_model, n):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(pendulum_model), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feeds = {"obs": _obs(n), "rtg": np.ones((n, 1), np.float32), "prev_reward": np.zeros((n, 1), np.float32),
             "first": np.zeros(n, bool), "state_in.0.C": np.zeros((n, 4, 8, 8), np.float32),
             "state_in.1.h": np.zeros((n, 16), np.float32)}

    def step():  # the least a caller must do: run and carry the state
        out = dict(zip(names, sess.run(names, feeds)))
        feeds["state_in.0.C"], feeds["state_in.1.h"] = out["state_out.0.C"], out["state_out.1.h"]
        return out["action"]

    benchmark(step)


@pytest.mark.parametrize("n", N)
def test_policy_step(benchmark, make_policy, n):
    p = make_policy(n=n)
    obs = _obs(n)
    benchmark(lambda: p.step(obs, prev_reward=0.0, first=False))


@pytest.mark.parametrize("n", N)
def test_policy_step_with_watchdog(benchmark, make_policy, n):
    """What the control loop does per tick: the step with the inference in a watchdog thread."""
    p = make_policy(n=n)
    p.set_timeout(1.0)
    obs = _obs(n)
    benchmark(lambda: p.step_detailed(obs, prev_reward=0.0, first=False))
    p.close()
