"""TensorRT engine backend (implements runtime.backend.Backend).

    be = TensorRTBackend("policy.engine", manifest=None, max_batch=None)   # manifest: read from the sidecar
    outs = be.run(feeds)          # feeds: every graph input incl. the state inputs; returns every output

tensorrt and cuda-python (``cuda.bindings.runtime``; not pycuda) are imported only when a backend is constructed,
so this module imports on any machine. Device buffers are allocated once for ``max_batch`` rows. The recurrent
state lives on the device in ping-pong buffers: step k reads state_in from buffer k%2 and writes state_out into
buffer (k+1)%2, so no state copy is made between steps; which input pairs with which output is the
manifest's state list. A state feed, when given, is uploaded into the current buffer (the policy owns the
state); when feeds omit the state the device copy carries over (``fetch_state=False`` also skips downloading
the state outputs: the state then never crosses the bus).
After one warm-up enqueue, execute_async_v3 is captured into a CUDA graph on a non-blocking stream (one graph
per batch size and ping-pong parity, since a graph freezes shapes and addresses); if capture fails the
backend falls back to plain enqueue.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .backend import BackendUnavailable
from .graph_check import IOSpec


class TensorRTUnavailable(BackendUnavailable):
    """tensorrt / cuda-python / a CUDA device is missing."""


class EngineMismatch(RuntimeError):
    """The engine was built for another TensorRT version or another GPU."""


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            f"TensorRT is not installed ({e}). It comes with JetPack on Jetson, or from NVIDIA's package index on "
            "x86 (pip install tensorrt-cu12 --extra-index-url https://pypi.nvidia.com). Run the .onnx graph with "
            "ONNX Runtime instead (--backend ort-cpu).") from None
    if not hasattr(trt, "Runtime"):
        raise TensorRTUnavailable(f"the installed 'tensorrt' package has no Runtime (a PyPI stub?): {trt!r}")
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6 layout
        except ImportError:
            raise TensorRTUnavailable("cuda-python is not installed (pip install cuda-python); the TensorRT "
                                      "backend uses it for device memory, streams and CUDA graphs") from None
    return trt, cudart


def _ok(res, what):
    """Unpack a cuda-bindings result tuple, raising on an error code."""
    err, *rest = res if isinstance(res, tuple) else (res,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error in {what}: {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_path, manifest=None, max_batch: int | None = None, *, device: int = 0,
                 cuda_graph: bool = True, fetch_state: bool = True, check_build_info: bool = True):
        self._closed = True
        engine_path = Path(engine_path)
        trt, cudart = _import_trt()
        self.trt, self.cudart = trt, cudart
        # A Runtime constructed without a GPU returns an object that segfaults later: check the device first.
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count < 1:
            raise TensorRTUnavailable(f"no CUDA device available (cudaGetDeviceCount: {err}, count {count})")
        if device >= count:
            raise TensorRTUnavailable(f"CUDA device {device} requested, {count} present")
        _ok(cudart.cudaSetDevice(device), "cudaSetDevice")
        prop = _ok(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        gpu_name = (prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)).rstrip("\x00")
        cc = f"{prop.major}.{prop.minor}"

        from .model_files import read_manifest, sidecar_json

        if manifest is None:
            manifest = read_manifest(engine_path)
        self.manifest = manifest
        build = sidecar_json(engine_path).get("tensorrt", {})
        if check_build_info and build:
            if build.get("version") and build["version"] != trt.__version__:
                raise EngineMismatch(
                    f"{engine_path} was built with TensorRT {build['version']}, this is TensorRT {trt.__version__}: "
                    "engines are tied to the TensorRT version; rebuild it here with 'lram compile'")
            if build.get("compute_capability") and build["compute_capability"] != cc:
                raise EngineMismatch(
                    f"{engine_path} was built for {build.get('gpu')} (sm {build['compute_capability']}), this GPU is "
                    f"{gpu_name} (sm {cc}): rebuild the engine on this machine with 'lram compile'")
        self.gpu = {"name": gpu_name, "compute_capability": cc}

        if (manifest is not None and getattr(manifest, "flavour", "standard") == "plugin") or build.get("plugins"):
            pass  # AOT plugins are compiled into the engine: nothing to register at run time
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise EngineMismatch(
                f"TensorRT {trt.__version__} could not deserialize {engine_path}: it was most likely built with "
                f"another TensorRT version or for another GPU than {gpu_name} (sm {cc}); rebuild it with 'lram compile'")
        self.context = self.engine.create_execution_context()
        self.stream = _ok(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate")
        self._closed = False

        self.max_batch = int(max_batch or build.get("max_batch") or 1)
        self.cuda_graph = cuda_graph
        self.fetch_state = fetch_state
        self.metadata = {}
        self._specs = {}  # name -> (is_input, np dtype, shape with -1 for batch)
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            n = self.engine.get_tensor_name(i)
            is_in = self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
            dt = np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
            shape = tuple(self.engine.get_tensor_shape(n))
            if any(d < 0 for d in shape[1:]):
                raise EngineMismatch(f"tensor {n!r} has dynamic dimensions {shape} beyond the batch axis")
            self._specs[n] = (is_in, dt, shape)
            (self.inputs if is_in else self.outputs).append(IOSpec(n, dt.name, len(shape), tuple(None if d < 0 else d for d in shape)))

        # state pairs (from the manifest): each input and its output share a ping-pong pair of device buffers
        self._state_in = {s.input: s.output for s in manifest.state}
        self._state_out = {s.output: s.input for s in manifest.state}
        missing = [n for pair in self._state_in.items() for n in pair if n not in self._specs]
        if missing:
            raise EngineMismatch(f"{engine_path}: the manifest's state tensors {missing} are not in the engine")
        self._dev, self._host = {}, {}
        for n, (is_in, dt, shape) in self._specs.items():
            nbytes = self._nbytes(shape, dt, self.max_batch)
            self._host[n] = self._pinned(nbytes)
            if n in self._state_out:
                continue
            if n in self._state_in:
                self._dev[n] = [self._malloc(nbytes, zero=True), self._malloc(nbytes, zero=True)]
            else:
                self._dev[n] = [self._malloc(nbytes)]
        self._parity = 0
        self._batch = None
        self._graphs = {}  # (batch, parity) -> cudaGraphExec_t, or None where capture failed
        self._warm = set()

    # ---- memory -------------------------------------------------------------------------------------
    @staticmethod
    def _nbytes(shape, dt, batch):
        return int(np.prod([batch if d < 0 else d for d in shape], dtype=np.int64)) * dt.itemsize

    def _malloc(self, nbytes, zero=False):
        ptr = _ok(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc")
        if zero:
            _ok(self.cudart.cudaMemset(ptr, 0, max(nbytes, 1)), "cudaMemset")
        return ptr

    def _pinned(self, nbytes):
        ptr = _ok(self.cudart.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost")
        import ctypes

        buf = (ctypes.c_char * max(nbytes, 1)).from_address(int(ptr))
        return ptr, np.frombuffer(buf, dtype=np.uint8)

    def _addr(self, name, parity):
        if name in self._state_out:
            return int(self._dev[self._state_out[name]][1 - parity])
        bufs = self._dev[name]
        return int(bufs[parity] if len(bufs) == 2 else bufs[0])

    # ---- run ----------------------------------------------------------------------------------------
    def _bind(self, batch, parity):
        for n, (is_in, dt, shape) in self._specs.items():
            if is_in:
                self.context.set_input_shape(n, tuple(batch if d < 0 else d for d in shape))
            self.context.set_tensor_address(n, self._addr(n, parity))

    def _enqueue(self, batch, parity):
        key = (batch, parity)
        self._bind(batch, parity)
        if self.cuda_graph and key in self._graphs and self._graphs[key] is not None:
            _ok(self.cudart.cudaGraphLaunch(self._graphs[key], self.stream), "cudaGraphLaunch")
            return
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        if self.cuda_graph and key not in self._graphs:
            if key in self._warm:
                self._graphs[key] = self._capture()
            else:  # first enqueue of this shape initialises: keep it out of the capture
                _ok(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
                self._warm.add(key)

    def _capture(self):
        cr = self.cudart
        try:
            _ok(cr.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
            _ok(cr.cudaStreamBeginCapture(self.stream, cr.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                "cudaStreamBeginCapture")
            ok = self.context.execute_async_v3(int(self.stream))
            graph = _ok(cr.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
            if not ok:
                return None
            return _ok(cr.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except Exception:
            # the engine holds non-capturable layers: leave capture mode and fall back to plain enqueue
            try:
                cr.cudaStreamEndCapture(self.stream)
            except Exception:
                pass
            cr.cudaGetLastError()
            return None

    def run(self, feeds: dict) -> dict:
        if self._closed:
            raise RuntimeError("TensorRTBackend is closed")
        cr = self.cudart
        H2D, D2H = cr.cudaMemcpyKind.cudaMemcpyHostToDevice, cr.cudaMemcpyKind.cudaMemcpyDeviceToHost
        batch = None
        for n, (is_in, dt, shape) in self._specs.items():
            if not is_in or n not in feeds:
                continue
            b = np.shape(feeds[n])[0] if shape and shape[0] < 0 else None
            if b is not None:
                if batch is not None and b != batch:
                    raise ValueError(f"inconsistent batch sizes in feeds ({batch} vs {b} for {n!r})")
                batch = b
        batch = batch or self._batch or 1
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} exceeds this backend's max_batch {self.max_batch} (engine built for "
                             f"up to {self.max_batch}; rebuild with --max-batch)")
        if self._batch is not None and batch != self._batch and not any(n in feeds for n in self._state_in):
            raise ValueError("the batch size changed but no state was fed: the device state has another batch")
        p = self._parity
        for n, (is_in, dt, shape) in self._specs.items():
            if not is_in:
                continue
            if n not in feeds:
                if n in self._state_in:
                    continue  # the device copy carries over
                raise KeyError(f"missing input {n!r}")
            want = tuple(batch if d < 0 else d for d in shape)
            a = np.ascontiguousarray(feeds[n], dtype=dt)
            if a.shape != want:
                raise ValueError(f"input {n!r}: shape {a.shape}, expected {want}")
            hptr, hview = self._host[n]
            hview[: a.nbytes] = a.reshape(-1).view(np.uint8)
            _ok(cr.cudaMemcpyAsync(self._addr(n, p), hptr, a.nbytes, H2D, self.stream), "cudaMemcpyAsync H2D")
        self._enqueue(batch, p)
        out = {}
        for n, (is_in, dt, shape) in self._specs.items():
            if is_in:
                continue
            if n in self._state_out and not self.fetch_state:
                continue
            want = tuple(batch if d < 0 else d for d in shape)
            nbytes = int(np.prod(want, dtype=np.int64)) * dt.itemsize
            hptr, hview = self._host[n]
            _ok(cr.cudaMemcpyAsync(hptr, self._addr(n, p), nbytes, D2H, self.stream), "cudaMemcpyAsync D2H")
            out[n] = (hview, nbytes, dt, want)
        _ok(cr.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self._parity, self._batch = 1 - p, batch
        return {n: hv[:nb].view(dt).reshape(want).copy() for n, (hv, nb, dt, want) in out.items()}

    def reset_state(self) -> None:
        """Zero the device-resident state (both ping-pong buffers)."""
        for n in self._state_in:
            nbytes = self._nbytes(self._specs[n][2], self._specs[n][1], self.max_batch)
            for ptr in self._dev[n]:
                _ok(self.cudart.cudaMemsetAsync(ptr, 0, nbytes, self.stream), "cudaMemsetAsync")
        _ok(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._closed:
            return
        cr = self.cudart
        cr.cudaStreamSynchronize(self.stream)
        for g in self._graphs.values():
            if g is not None:
                cr.cudaGraphExecDestroy(g)
        self._graphs.clear()
        for bufs in self._dev.values():
            for ptr in bufs:
                cr.cudaFree(ptr)
        for hptr, _ in self._host.values():
            cr.cudaFreeHost(hptr)
        self._dev, self._host = {}, {}
        self.context = None
        self.engine = None
        self.runtime = None
        cr.cudaStreamDestroy(self.stream)
        self._closed = True

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
