"""The TensorRT backend imports without tensorrt and refuses clearly to construct without it."""
import importlib.util
import sys

import pytest


def test_imports_without_tensorrt():
    from lram.runtime import backend_tensorrt as bt

    assert hasattr(bt, "TensorRTBackend")
    assert "tensorrt" not in sys.modules or importlib.util.find_spec("tensorrt") is not None


def test_clear_error_without_tensorrt(tmp_path, monkeypatch):
    from lram.runtime import backend_tensorrt as bt

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(bt.TensorRTUnavailable, match="TensorRT is not installed"):
        bt.TensorRTBackend(tmp_path / "policy.engine")


def test_clear_error_without_cuda_python(tmp_path, monkeypatch):
    import types

    from lram.runtime import backend_tensorrt as bt

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(Runtime=object, __version__="10.13.0"))
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(bt.TensorRTUnavailable, match="cuda-python"):
        bt.TensorRTBackend(tmp_path / "policy.engine")


def test_refuses_without_cuda_device(tmp_path, monkeypatch):
    """Constructing trt.Runtime without a GPU segfaults later: the device count is checked first."""
    import types

    from lram.runtime import backend_tensorrt as bt

    def no_runtime(*a):
        raise AssertionError("trt.Runtime must not be constructed without a device")

    fake_rt = types.SimpleNamespace(cudaGetDeviceCount=lambda: (100, 0))  # cudaErrorNoDevice
    monkeypatch.setattr(bt, "_import_trt", lambda: (types.SimpleNamespace(Runtime=no_runtime), fake_rt))
    with pytest.raises(bt.TensorRTUnavailable, match="no CUDA device"):
        bt.TensorRTBackend(tmp_path / "policy.engine")


def test_make_backend_routes_engines_to_tensorrt(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from lram.runtime.backends import BackendUnavailable, make_backend

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        make_backend(tmp_path / "policy.engine")
