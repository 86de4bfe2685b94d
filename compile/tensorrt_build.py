"""Build a TensorRT engine from an lram step graph (ONNX), or check that NVIDIA's ONNX parser takes it.

    build_engine("policy.onnx", "policy.engine", max_batch=16, plugins=True)
    check_graph("policy.onnx")    # TensorRT for RTX (pip install tensorrt-rtx) as a CPU-side parser proxy

TensorRT and TensorRT for RTX are imported lazily; without them a clear error says what to install.
The engine is written atomically, with ``policy.manifest.json`` beside it: the graph's manifest plus a
``tensorrt`` section (TensorRT version, GPU name and compute capability, batch range, plugins).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lram.runtime.manifest import BATCH, ManifestError, sidecar_path
from lram.runtime.model_files import check_writable, read_manifest, write_artifact


class TensorRTMissing(RuntimeError):
    pass


class BuildError(RuntimeError):
    pass


INSTALL_TRT = ("TensorRT is not installed. On Jetson it comes with JetPack (python3-libnvinfer); on x86 install it "
               "from NVIDIA's index: pip install tensorrt-cu12 (or -cu13) --extra-index-url https://pypi.nvidia.com. "
               "Without TensorRT, run the graph with ONNX Runtime (lram run).")
INSTALL_RTX = ("Neither TensorRT for RTX nor TensorRT is installed, so the graph cannot be checked with NVIDIA's "
               "ONNX parser. Install TensorRT for RTX (CPU-capable parser + builder, about 95 MB): "
               "pip install tensorrt-rtx")


def import_tensorrt(flavour: str = "tensorrt"):
    """(module, flavour name): flavour 'tensorrt' (full TensorRT) or 'rtx' (TensorRT for RTX, then TensorRT)."""
    if flavour == "rtx":
        try:
            import tensorrt_rtx as trt

            return trt, "tensorrt_rtx"
        except ImportError:
            pass
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTMissing(INSTALL_RTX if flavour == "rtx" else INSTALL_TRT) from None
    if not hasattr(trt, "Builder"):  # lean/dispatch runtimes or the PyPI stub
        raise TensorRTMissing(f"the installed 'tensorrt' ({getattr(trt, '__version__', '?')}) has no Builder. " + INSTALL_TRT)
    return trt, "tensorrt"


def cuda_device_info() -> dict | None:
    """{'name', 'compute_capability', 'count'} of device 0 via cuda-python, or None without a GPU / cuda-python."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return None
    err, prop = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        return None
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {"name": name.rstrip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}", "count": int(count)}


_ORT_ONLY = {"ort": "ONNX Runtime's contrib LinearAttention", "native": "lram.native layer nodes, run by the CPU runtime"}


def refuse_ort_flavour(manifest, onnx_path) -> None:
    """The ort and native flavours are ONNX Runtime CPU graphs that TensorRT cannot parse."""
    flavour = getattr(manifest, "flavour", None)
    if flavour in _ORT_ONLY:
        raise BuildError(f"{onnx_path} is the '{flavour}' flavour ({_ORT_ONLY[flavour]}, which TensorRT does not have): "
                         "export it with 'lram export --flavour standard' (or plugin) for TensorRT")


def _uses_plugins(onnx_path) -> bool:
    try:
        import onnx
    except ImportError:
        return False
    from lram.kernels.trt_plugins import check_onnx_plugin_nodes

    return bool(check_onnx_plugin_nodes(onnx.load(str(onnx_path), load_external_data=False)))


@dataclass
class BuildResult:
    engine_path: Path | None
    manifest_path: Path | None
    flavour: str
    version: str
    seconds: float
    engine_bytes: int
    inputs: dict = field(default_factory=dict)  # name -> (min, opt, max) shapes
    outputs: list = field(default_factory=list)


def _network_flags(trt) -> int:
    flags = trt.NetworkDefinitionCreationFlag
    if hasattr(flags, "STRONGLY_TYPED"):  # precision comes from the ONNX tensor types (TensorRT 10.x/11.x)
        return 1 << int(flags.STRONGLY_TYPED)
    return 0


def _build(trt, onnx_path, *, min_batch, opt_batch, max_batch, workspace_mb, verbose):
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    onnx_path = Path(onnx_path)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "\n".join(f"  {parser.get_error(i)}" for i in range(parser.num_errors))
        raise BuildError(f"the ONNX parser rejected {onnx_path}:\n{errs}")
    config = builder.create_builder_config()
    if workspace_mb and hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    shapes, dynamic = {}, False
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(t.shape)
        if any(d < 0 for d in shape[1:]):
            raise BuildError(f"input {t.name!r} has dynamic dimensions {shape} beyond the batch axis 0 "
                             f"(only '{BATCH}' on axis 0 may be dynamic)")
        if shape and shape[0] < 0:
            dynamic = True
            mm = tuple((b, *shape[1:]) for b in (min_batch, opt_batch, max_batch))
            profile.set_shape(t.name, *mm)
            shapes[t.name] = mm
        else:
            shapes[t.name] = (shape, shape, shape)
    if dynamic:
        config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path} (run with --verbose for the log)")
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    return blob, shapes, outputs


def build_engine(onnx_path, engine_path, *, max_batch: int = 1, opt_batch: int | None = None, min_batch: int = 1,
                 plugins: bool = False, workspace_mb: int | None = None, verbose: bool = False) -> BuildResult:
    """Full TensorRT build; writes ENGINE and ENGINE-stem.manifest.json atomically."""
    if not (1 <= min_batch <= (opt_batch or max_batch) <= max_batch):
        raise BuildError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    manifest = read_manifest(onnx_path)  # fail before the (slow) build, with the same checks as everywhere
    check_writable(engine_path)
    refuse_ort_flavour(manifest, onnx_path)
    trt, flavour = import_tensorrt("tensorrt")
    gpu = cuda_device_info()
    if gpu is None:
        raise BuildError("no CUDA device found (or cuda-python missing): a TensorRT engine is built on the GPU it "
                         "will run on. Use 'lram compile --check' on a machine without a GPU.")
    if plugins or manifest.flavour == "plugin" or _uses_plugins(onnx_path):
        from lram.kernels import trt_plugins

        trt_plugins.register()
    t0 = time.time()
    blob, shapes, outputs = _build(trt, onnx_path, min_batch=min_batch, opt_batch=opt_batch or max_batch,
                                   max_batch=max_batch, workspace_mb=workspace_mb, verbose=verbose)
    secs = time.time() - t0
    data = bytes(blob)
    d = manifest.to_dict()
    d["tensorrt"] = {
        "version": trt.__version__, "flavour": flavour, "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"], "min_batch": min_batch,
        "opt_batch": opt_batch or max_batch, "max_batch": max_batch,
        "plugins": bool(plugins or manifest.flavour == "plugin"), "onnx": onnx_path.name,
        "engine_bytes": len(data), "build_seconds": round(secs, 3),
    }
    write_artifact(engine_path, d, lambda tmp: tmp.write_bytes(data))
    return BuildResult(engine_path, sidecar_path(engine_path), flavour, trt.__version__, secs, len(data), shapes, outputs)


def check_graph(onnx_path, *, max_batch: int = 1, verbose: bool = False) -> BuildResult:
    """Parse + build with TensorRT for RTX (CPU-capable), else TensorRT; nothing is written."""
    try:
        refuse_ort_flavour(read_manifest(onnx_path), onnx_path)
    except ManifestError:
        pass  # any ONNX graph may be checked; only ours carry a flavour
    trt, flavour = import_tensorrt("rtx")
    if flavour == "tensorrt" and cuda_device_info() is None:
        raise TensorRTMissing("only the full TensorRT is installed and there is no CUDA device to build on. " + INSTALL_RTX)
    if _uses_plugins(onnx_path):
        if flavour == "tensorrt_rtx":
            raise BuildError("the graph holds lram plugin nodes (MLSTMCellStep/SLSTMCellStep); TensorRT for RTX "
                             "has no Python plugins, so it cannot check this flavour: export the standard flavour "
                             "to check it here, or check on a machine with TensorRT >= 10.9")
        from lram.kernels import trt_plugins

        trt_plugins.register()
    t0 = time.time()
    blob, shapes, outputs = _build(trt, onnx_path, min_batch=1, opt_batch=max_batch, max_batch=max_batch,
                                   workspace_mb=None, verbose=verbose)
    return BuildResult(None, None, flavour, trt.__version__, time.time() - t0, len(bytes(blob)), shapes, outputs)
