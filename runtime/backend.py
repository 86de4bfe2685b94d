"""The backend interface: what runs one step-graph call. ONNX Runtime (backends.py) and TensorRT
(backend_tensorrt.py) implement it; ``backends.make_backend`` picks one from a table.

A backend knows tensors, not policies: the Policy owns the recurrent state and passes it in every call, and a
backend must neither keep nor modify ``feeds`` (the state is committed only after ``run`` returns).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .graph_check import IOSpec


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine (library or device missing)."""


@runtime_checkable
class Backend(Protocol):
    name: str  # e.g. "ort-cpu", "tensorrt"
    inputs: list[IOSpec]  # the graph's tensors, checked against the manifest at load
    outputs: list[IOSpec]
    metadata: dict  # the graph's metadata_props ({} for an artifact without, e.g. an engine)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name, for the inputs by name (state included)."""
        ...

    def close(self) -> None:
        ...
