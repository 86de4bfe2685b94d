"""The native flavour on ONNX Runtime's CPU (implements runtime.backend.Backend): ONNX segments + compiled layers.

The graph is cut at its ``lram.native`` nodes (graph_segments.split); each ONNX segment is an ONNX Runtime
session with the same settings as OrtBackend, each native node a call of the compiled layer core
(native_xlstm.py). One ``run`` is one step of the whole graph, as for any backend: same inputs, same outputs,
the feeds never modified, fresh output arrays.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .backend import BackendUnavailable
from .backend_ort import ort_session
from .graph_check import IOSpec
from .native_xlstm import DOMAIN, LAYERS, load_kernels

_NP_TYPES = {1: "float32", 10: "float16", 11: "float64", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool",
             16: "bfloat16"}


def _spec(v) -> IOSpec:
    dims = v.type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return IOSpec(v.name, _NP_TYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)), len(shape), shape)


class NativeOrtBackend:
    def __init__(self, path: str | Path, threads: int = 1, name: str = "ort-cpu"):
        try:
            import onnx
        except ImportError:
            raise BackendUnavailable("the native flavour is cut into ONNX Runtime segments at load, which needs the "
                                     "onnx package (pip install onnx), or export with --flavour ort") from None
        from .graph_segments import split

        kernels = load_kernels()
        try:
            model = onnx.load(str(path))
        except Exception as e:
            raise BackendUnavailable(f"cannot read {path} as an ONNX graph: {e}") from None
        unknown = sorted({n.op_type for n in model.graph.node if n.domain == DOMAIN and n.op_type not in LAYERS})
        if unknown:
            raise BackendUnavailable(f"{path} has {DOMAIN} nodes this runtime does not know: {unknown}; update lram-deploy")
        self.name = name
        self.metadata = {p.key: p.value for p in model.metadata_props}
        self.inputs = [_spec(i) for i in model.graph.input]
        self.outputs = [_spec(o) for o in model.graph.output]
        self._out_names = [o.name for o in self.outputs]
        self._kernels = kernels
        # threads beyond the first split each compiled call's robots (ONNX Runtime's segments get them as well)
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="lram-native") if threads > 1 else None
        self._stages = []
        for stage in split(model, DOMAIN):
            seg = stage.segment
            # with more than one thread, ONNX Runtime's workers must not spin while the compiled calls run on
            # those cores (measured: 8 robots on 2 threads, p50 72 ms with spinning)
            session = None if seg is None else ort_session(seg.model.SerializeToString(), threads, path,
                                                           spin=threads == 1)
            self._stages.append((session, seg, stage.natives))
        del model
        self.providers = ["CPUExecutionProvider"]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env = dict(feeds)
        for session, seg, natives in self._stages:
            if session is not None:
                env.update(zip(seg.outputs, session.run(seg.outputs, {i: env[i] for i in seg.inputs})))
            for node in natives:
                args = (node.weights[i] if i in node.weights else env[i] for i in node.inputs)
                env.update(zip(node.outputs, LAYERS[node.op](self._kernels, *args, pool=self._pool)))
        return {o: env[o] for o in self._out_names}

    def close(self) -> None:
        self._stages = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
