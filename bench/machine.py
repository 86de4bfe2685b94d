"""Which machine a latency was measured on, and whether two records name the same one.

Identity is the hardware: CPU model, logical cores, architecture, and the GPU when the backend runs on one.
Runtime versions (onnxruntime, TensorRT, Python) are recorded but are NOT identity: a new ONNX Runtime or
TensorRT on the same robot computer is exactly the change a latency gate must be able to judge.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

IDENTITY = ("cpu", "cores", "arch", "gpu")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):  # x86 / ARM (Jetson)
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(backend=None) -> dict:
    import onnxruntime

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(), "gpu": None,
            "platform": platform.platform(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "tensorrt": None}
    gpu = getattr(backend, "gpu", None)  # the TensorRT backend records its device
    if gpu:
        info["gpu"] = gpu.get("name")
    if backend is not None and getattr(backend, "name", "").startswith(("ort-cuda", "ort-trt", "tensorrt")):
        try:
            import tensorrt

            info["tensorrt"] = tensorrt.__version__
        except ImportError:
            pass
    if backend is not None:
        info["backend"] = backend.name
    try:
        info["loadavg"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def differences(a: dict, b: dict) -> list[str]:
    """The identity fields where ``a`` and ``b`` differ, as 'field: a vs b'."""
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in IDENTITY if a.get(k) != b.get(k)]


def describe(m: dict) -> str:
    return f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('arch')}" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
