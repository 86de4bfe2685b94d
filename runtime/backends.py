"""Which backend runs a model: the selection table (the interface: backend.py; implementations:
backend_ort.py, backend_tensorrt.py).

TensorRT is imported only when asked for, so a robot without it (and this project's CI) never touches it.
"""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from .backend import BackendUnavailable
from .backend_ort import NativeFlavour, OrtBackend
from .heap import retain_freed_memory

BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")  # "auto" + the keys of OPENERS
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def _cuda_providers(with_tensorrt: bool) -> list:
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailable(
            "ONNX Runtime here has no CUDAExecutionProvider (this is the CPU build of onnxruntime; the GPU build is "
            "onnxruntime-gpu). Use --backend ort-cpu.")
    if with_tensorrt and "TensorrtExecutionProvider" not in available:
        raise BackendUnavailable("ONNX Runtime here has no TensorrtExecutionProvider; use --backend ort-cuda or ort-cpu.")
    return (["TensorrtExecutionProvider"] if with_tensorrt else []) + ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _tensorrt_backend(path, threads):
    try:
        import tensorrt  # noqa: F401  (imported only to give the clear error below)
    except ImportError as e:
        raise BackendUnavailable(
            f"TensorRT is not installed ({e}). It comes with JetPack on Jetson, or from NVIDIA's package index on x86; "
            "run the .onnx model with --backend ort-cpu (or auto) instead.") from None
    from .backend_tensorrt import TensorRTBackend

    return TensorRTBackend(str(path))


def _ort_cpu(path, threads):
    try:
        return OrtBackend(path, ["CPUExecutionProvider"], threads, name="ort-cpu")
    except NativeFlavour:  # ONNX Runtime segments around the compiled xLSTM layers
        from .backend_native import NativeOrtBackend

        return NativeOrtBackend(path, threads, name="ort-cpu")


def _ort_gpu(path, threads, with_tensorrt: bool):
    name = "ort-trt" if with_tensorrt else "ort-cuda"
    try:
        return OrtBackend(path, _cuda_providers(with_tensorrt), threads, name=name)
    except NativeFlavour as e:
        raise BackendUnavailable(f"{e}, whose compiled layers run on the CPU: use --backend ort-cpu, or export "
                                 "--flavour ort or standard for a GPU") from None


# Selecting a backend is this table: kind -> opener(path, threads). A new backend is one module implementing
# runtime.backend.Backend plus one line here.
OPENERS = {
    "ort-cpu": _ort_cpu,
    "ort-cuda": lambda path, threads: _ort_gpu(path, threads, False),
    "ort-trt": lambda path, threads: _ort_gpu(path, threads, True),
    "tensorrt": _tensorrt_backend,
}


def make_backend(path: str | Path, kind: str = "auto", threads: int = 1):
    """Open ``path`` with the backend ``kind``.

    ``auto``: a TensorRT engine file goes to TensorRT; an .onnx goes to ONNX Runtime, on CUDA when this
    onnxruntime build has it, else on the CPU. Auto never falls back silently from an explicit request:
    asking for ``ort-cuda`` on a machine without it is an error, not a quiet CPU run.
    """
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    engine = Path(path).suffix.lower() in ENGINE_SUFFIXES
    if kind == "auto":
        if engine:
            kind = "tensorrt"
        elif "CUDAExecutionProvider" in ort.get_available_providers():
            kind = "ort-cuda"
        else:
            kind = "ort-cpu"
    if engine and kind != "tensorrt":
        raise BackendUnavailable(f"{path} is a TensorRT engine; ONNX Runtime backends need the .onnx graph")
    retain_freed_memory()  # every step returns fresh state arrays: reuse freed blocks, no page faults (heap.py)
    return OPENERS[kind](path, threads)
