"""The ONNX Runtime backend (implements runtime.backend.Backend): CPU, CUDA or TensorRT execution providers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .backend import BackendUnavailable
from .graph_check import IOSpec
from .native_xlstm import DOMAIN as NATIVE_DOMAIN

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(uint8)": "uint8",
    "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
    "tensor(bfloat16)": "bfloat16",
}


def _spec(arg) -> IOSpec:
    """ONNX Runtime's NodeArg as an IOSpec; a dynamic dimension (a name, or None) becomes None."""
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return IOSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), len(shape), shape)


class NativeFlavour(BackendUnavailable):
    """The graph is the native flavour: backends.py opens it with backend_native.NativeOrtBackend instead."""


def ort_session(src, threads: int, path, providers=("CPUExecutionProvider",), spin: bool = True) -> ort.InferenceSession:
    """An ONNX Runtime session for ``src`` (a file or serialized bytes; ``path`` names it in errors) with this
    runtime's settings, or BackendUnavailable saying what to do. ``spin=False``: its worker threads sleep between
    calls instead of spinning (when other threads of ours need the cores in between)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(src, so, providers=list(providers))
    except Exception as e:  # ORT's own exception types; keep its words, add what to do
        if "LinearAttention" in str(e):
            raise BackendUnavailable(
                f"{path} is the ort flavour (com.microsoft::LinearAttention), which needs onnxruntime >= 1.30 "
                f"(this is {ort.__version__}): upgrade onnxruntime, or export with --flavour standard") from None
        if f"{NATIVE_DOMAIN}:" in str(e):
            raise NativeFlavour(f"{path} is the native flavour ({NATIVE_DOMAIN} layer nodes)") from None
        if "lram" in str(e):
            raise BackendUnavailable(
                f"{path} is the plugin flavour (lram::*CellStep nodes), which is built for the TensorRT plugins; "
                "for ONNX Runtime export the ort or standard flavour (lram export without --flavour plugin)") from None
        raise BackendUnavailable(f"ONNX Runtime cannot load {path}: {e}") from None


class OrtBackend:
    """ONNX Runtime with an explicit provider list.

    Threads default to 1: on a small robot computer the model shares cores with sensing and control, and
    measured here a small step went from ~1 ms to >100 ms with default threading under contention.
    IOBinding is not used: binding preallocated ping-pong output buffers for an 8.4 MB state (the 16M model's,
    per robot) measured no gain over plain ``session.run`` on this 2-core CPU (1.04 vs 1.07 ms median at
    batch 1, 9.6 vs 10.9 ms at batch 4), so the simpler call stays.
    """

    def __init__(self, path: str | Path, providers=("CPUExecutionProvider",), threads: int = 1, name: str = "ort-cpu"):
        self.session = ort_session(str(path), threads, path, providers)
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
