"""Compile the fused step kernels with nvcc to PTX and cubin.

    python -m lram.kernels.build --out build/kernels [--arch 87 90 110] [--kind ptx cubin]

Targets: sm_87 (Jetson Orin), sm_90 (Hopper), sm_110 (Thor; CUDA 13 renamed Thor from sm_101 to sm_110,
the first of the two that ``nvcc --list-gpu-arch`` offers is used). PTX is what TensorRT's AOT plugins and
NVRTC/CuPy consume (JIT-compiled by the driver for the GPU at hand); cubins are ready-made machine code.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
SOURCES = {"mlstm_step": KERNEL_DIR / "mlstm_step.cu", "slstm_step": KERNEL_DIR / "slstm_step.cu"}
HEADER = KERNEL_DIR / "lram_kernels.cuh"
ENTRY_POINTS = {"mlstm_step": "lram_mlstm_step_f32", "slstm_step": "lram_slstm_step_f32"}
DEFAULT_ARCHS = ("87", "90", "thor")
NVCC_FLAGS = ["-std=c++17", "-O3", "-lineinfo"]  # no --use_fast_math: the reference check wants 1e-5


class NvccNotFound(RuntimeError):
    pass


def find_nvcc() -> str:
    """Path of nvcc ($NVCC, then PATH, then $CUDA_HOME/bin, /usr/local/cuda/bin); clear error if absent."""
    cands = [os.environ.get("NVCC"), shutil.which("nvcc")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            cands.append(str(Path(home) / "bin" / "nvcc"))
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise NvccNotFound(
        "nvcc (the CUDA compiler) was not found on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin. "
        "Install the CUDA toolkit (12.6+; 13.0 for Thor's sm_110) or set NVCC=/path/to/nvcc."
    )


def list_archs(nvcc: str | None = None) -> list[str]:
    """Compute capabilities nvcc can target, e.g. ['75', '80', ..., '110']."""
    out = subprocess.run([nvcc or find_nvcc(), "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
    return [a.split("_", 1)[1] for a in out.split() if a.startswith("compute_")]


def resolve_arch(arch: str, available: list[str]) -> str:
    """'thor' -> '110' (CUDA 13) or '101' (CUDA 12.8/12.9); numbers pass through if nvcc offers them."""
    arch = str(arch).lower().removeprefix("sm_").removeprefix("compute_")
    if arch == "thor":
        for a in ("110", "101"):
            if a in available:
                return a
        raise RuntimeError(f"this nvcc offers no Thor target (sm_110 / sm_101); it offers {available}")
    if arch not in available:
        raise RuntimeError(f"this nvcc cannot target sm_{arch}; it offers {available}")
    return arch


def compile_one(src: Path, out: Path, arch: str, kind: str, nvcc: str) -> Path:
    if kind == "ptx":
        cmd = [nvcc, "-ptx", f"-arch=compute_{arch}"]
    elif kind == "cubin":
        cmd = [nvcc, "-cubin", f"-arch=sm_{arch}"]
    else:
        raise ValueError(f"unknown output kind {kind!r} (ptx or cubin)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    cmd += [*NVCC_FLAGS, f"-I{KERNEL_DIR}", str(src), "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"nvcc failed ({' '.join(cmd)}):\n{r.stderr}")
    os.replace(tmp, out)
    return out


def build(out_dir: str | Path, archs=DEFAULT_ARCHS, kinds=("ptx", "cubin"), kernels=tuple(SOURCES), jobs: int | None = None) -> dict:
    """Compile every kernel for every arch and kind; returns {(kernel, arch, kind): path}. Parallel nvcc."""
    from concurrent.futures import ThreadPoolExecutor

    nvcc = find_nvcc()
    available = list_archs(nvcc)
    resolved = [resolve_arch(a, available) for a in archs]
    out_dir = Path(out_dir)
    jobsl = [(k, a, kind) for k in kernels for a in resolved for kind in kinds]
    with ThreadPoolExecutor(max_workers=jobs or min(8, os.cpu_count() or 2)) as ex:
        futs = {
            j: ex.submit(compile_one, SOURCES[j[0]], out_dir / f"{j[0]}.sm_{j[1]}.{j[2]}", j[1], j[2], nvcc) for j in jobsl
        }
        return {j: f.result() for j, f in futs.items()}


def ptx_for(kernel: str, arch: str | int, cache_dir: str | Path | None = None) -> str:
    """PTX text of one kernel for one arch (compiled on demand into cache_dir, default ~/.cache/lram/kernels)."""
    cache = Path(cache_dir or os.environ.get("LRAM_KERNEL_CACHE", Path.home() / ".cache" / "lram" / "kernels"))
    arch = str(arch).removeprefix("sm_")
    path = cache / f"{kernel}.sm_{arch}.ptx"
    newest_src = max(SOURCES[kernel].stat().st_mtime, HEADER.stat().st_mtime)
    if not path.exists() or path.stat().st_mtime < newest_src:
        compile_one(SOURCES[kernel], path, resolve_arch(arch, list_archs()), "ptx", find_nvcc())
    return path.read_text()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lram.kernels.build", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/kernels", help="output directory (default build/kernels)")
    ap.add_argument("--arch", nargs="+", default=list(DEFAULT_ARCHS), help="87 90 thor (or 110/101)")
    ap.add_argument("--kind", nargs="+", default=["ptx", "cubin"], choices=["ptx", "cubin"])
    a = ap.parse_args(argv)
    try:
        res = build(a.out, a.arch, a.kind)
    except (NvccNotFound, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for (k, arch, kind), p in sorted(res.items()):
        print(f"{k:12s} sm_{arch:4s} {kind:6s} {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
