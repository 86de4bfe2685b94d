"""Backends: what runs one step graph call. One tiny interface, several implementations.

The interface (duck-typed; ``runtime/backend_tensorrt.py``'s ``TensorRTBackend`` follows it too):

    name: str                         e.g. "ort-cpu"
    inputs, outputs: list[IOSpec]     the graph's tensors (name, numpy dtype name, rank) for the manifest check
    metadata: dict                    the graph's metadata_props ({} when the artifact has none, e.g. an engine)
    run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]   every output, by name; must not keep or
                                      modify ``feeds`` (the policy commits state only after run returns)
    close() -> None

Only numpy and onnxruntime are imported here; TensorRT is imported when asked for, so a robot without it
(and this project's CI) never touches it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .graph_check import IOSpec

BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(uint8)": "uint8",
    "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
    "tensor(bfloat16)": "bfloat16",
}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine (library or device missing)."""


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
        self.inputs = [IOSpec(i.name, _ORT_TYPES.get(i.type, i.type), len(i.shape)) for i in self.session.get_inputs()]
        self.outputs = [IOSpec(o.name, _ORT_TYPES.get(o.type, o.type), len(o.shape)) for o in self.session.get_outputs()]
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
    if kind == "tensorrt":
        return _tensorrt_backend(path, threads)
    if engine:
        raise BackendUnavailable(f"{path} is a TensorRT engine; ONNX Runtime backends need the .onnx graph")
    if kind == "ort-cpu":
        return OrtBackend(path, ["CPUExecutionProvider"], threads, name="ort-cpu")
    return OrtBackend(path, _cuda_providers(kind == "ort-trt"), threads, name=kind)
