"""Backend selection, clear errors for what this machine lacks, and a torch-free runtime."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import onnxruntime as ort
import pytest

from lram.runtime.backend_ort import OrtBackend
from lram.runtime.backends import BackendUnavailable, make_backend


def test_auto_is_ort_cpu_here(pendulum_model):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    be = make_backend(pendulum_model, "auto")
    assert isinstance(be, OrtBackend) and be.name == "ort-cpu" and be.providers == ["CPUExecutionProvider"]


def test_threads_setting(pendulum_model):
    be = make_backend(pendulum_model, "ort-cpu", threads=2)
    assert be.session.get_session_options().intra_op_num_threads == 2


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_missing_is_a_clear_error(pendulum_model, tmp_path):
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        make_backend(pendulum_model, "tensorrt")
    engine = tmp_path / "policy.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        make_backend(engine, "auto")  # an engine file selects TensorRT


def test_cuda_missing_is_a_clear_error(pendulum_model):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    with pytest.raises(BackendUnavailable, match="no CUDAExecutionProvider"):
        make_backend(pendulum_model, "ort-cuda")


def test_unknown_backend(pendulum_model):
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend(pendulum_model, "tvm")


def test_engine_with_ort_refused(tmp_path):
    engine = tmp_path / "p.plan"
    engine.write_bytes(b"\0")
    with pytest.raises(BackendUnavailable, match="TensorRT engine"):
        make_backend(engine, "ort-cpu")


def test_runtime_runs_without_torch(pendulum_model):
    """The robot's install has no torch: loading and stepping (and the loop) must not import it."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from lram.runtime.policy import Policy
        from lram.runtime.control_loop import ControlLoop, LoopConfig, Reading
        p = Policy.load({str(pendulum_model)!r}, n_robots=2, backend="auto")
        a = p.step(np.zeros((2, 3), np.float32), prev_reward=0.0, first=True)
        assert a.shape == (2, 1), a.shape
        loop = ControlLoop(p, lambda: Reading(np.zeros((2, 3), np.float32)), lambda a: None,
                           LoopConfig(hz=1000, warmup=1, realtime=False))
        assert loop.run(max_steps=3).ticks == 3
        heavy = sorted(m for m in ("torch", "onnx", "gymnasium", "metaworld", "matplotlib", "tensorrt") if m in sys.modules)
        assert not heavy, heavy
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
