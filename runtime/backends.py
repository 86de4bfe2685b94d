"""The ONNX Runtime backend and the table that picks a backend (the interface: runtime/backend.py).

Only numpy and onnxruntime are imported here; TensorRT is imported when asked for, so a robot without it
(and this project's CI) never touches it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .backend import BackendUnavailable
from .graph_check import IOSpec

BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")  # "auto" + the keys of OPENERS
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(uint8)": "uint8",
    "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
    "tensor(bfloat16)": "bfloat16",
}


def _spec(arg) -> IOSpec:
    """ONNX Runtime's NodeArg as an IOSpec; a dynamic dimension (a name, or None) becomes None."""
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return IOSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), len(shape), shape)


class OrtBackend:
    """ONNX Runtime with an explicit provider list.

    Threads default to 1: on a small robot computer the model shares cores with sensing and control, and
    measured here a small step went from ~1 ms to >100 ms with default threading under contention.
    IOBinding is not used: binding preallocated ping-pong output buffers for an 8.4 MB state (the 16M model's,
    per robot) measured no gain over plain ``session.run`` on this 2-core CPU (1.04 vs 1.07 ms median at
    batch 1, 9.6 vs 10.9 ms at batch 4), so the simpler call stays.
    """

    def __init__(self, path: str | Path, providers=("CPUExecutionProvider",), threads: int = 1, name: str = "ort-cpu"):
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=list(providers))
        except Exception as e:  # ORT's own exception types; keep its words, add what to do
            if "LinearAttention" in str(e):
                raise BackendUnavailable(
                    f"{path} is the ort flavour (com.microsoft::LinearAttention), which needs onnxruntime >= 1.30 "
                    f"(this is {ort.__version__}): upgrade onnxruntime, or export with --flavour standard") from None
            if "lram" in str(e):
                raise BackendUnavailable(
                    f"{path} is the plugin flavour (lram::*CellStep nodes), which is built for the TensorRT plugins; "
                    "for ONNX Runtime export the ort or standard flavour (lram export without --flavour plugin)") from None
            raise BackendUnavailable(f"ONNX Runtime cannot load {path}: {e}") from None
        self.name = name
        self.providers = self.session.get_providers()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.inputs = [_spec(i) for i in self.session.get_inputs()]
        self.outputs = [_spec(o) for o in self.session.get_outputs()]
        self._out_names = [o.name for o in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._out_names, self.session.run(self._out_names, feeds)))

    def close(self) -> None:
        self.session = None


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


# Selecting a backend is this table: kind -> opener(path, threads). A new backend is one module implementing
# runtime.backend.Backend plus one line here.
OPENERS = {
    "ort-cpu": lambda path, threads: OrtBackend(path, ["CPUExecutionProvider"], threads, name="ort-cpu"),
    "ort-cuda": lambda path, threads: OrtBackend(path, _cuda_providers(False), threads, name="ort-cuda"),
    "ort-trt": lambda path, threads: OrtBackend(path, _cuda_providers(True), threads, name="ort-trt"),
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
    return OPENERS[kind](path, threads)
