"""Memory side of the benchmark: bytes a step must touch, the streaming bandwidth, the memory floor, peak RSS.

The memory floor of one environment step at batch B is the time to stream the weights once and the state
twice (read + write) at the bandwidth measured in the same run:

    floor = (weight bytes + 2 x B x state bytes per robot) / bandwidth

Bandwidth comes from a one-thread GEMV over a ~256 MB matrix (every byte read once, like the weights of a
batch-1 step); it is sampled inside the benchmark's interleaved rounds so that the floor sees the same
machine load as the graph it is compared with.
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

import numpy as np

GEMV_BYTES = 256 * 2**20


class BandwidthProbe:
    """Callable: one GEMV over ``nbytes`` of fp32 (torch, one thread). ``bytes`` is what one call streams."""

    def __init__(self, nbytes: int = GEMV_BYTES):
        import torch

        cols = 4096
        rows = max(1, nbytes // (4 * cols))
        g = torch.Generator().manual_seed(0)
        self.a = torch.rand((rows, cols), generator=g)
        self.x = torch.rand(cols, generator=g)
        self.y = torch.empty(rows)
        self.bytes = self.a.numel() * 4
        self._mv = torch.mv

    def __call__(self):
        self._mv(self.a, self.x, out=self.y)

    def close(self):
        self.a = self.x = self.y = None


def onnx_weight_bytes(path: str | Path) -> int:
    """Bytes of the graph's initializers (what a step reads besides the state), external data included."""
    import onnx

    model = onnx.load(str(path), load_external_data=True)
    total = 0
    for init in model.graph.initializer:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        total += int(np.prod(init.dims, dtype=np.int64)) * itemsize
    return total


def floor_seconds(weight_bytes: int, state_bytes_per_robot: int, batch: int, bandwidth_Bps: float) -> float:
    return (weight_bytes + 2 * batch * state_bytes_per_robot) / bandwidth_Bps


def peak_rss_bytes() -> int:
    """Peak resident set of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def mb(nbytes: float) -> float:
    return nbytes / 1e6
