"""The one compiled part of the package: the native flavour's mLSTM cell (runtime/xlstm_native.c).

Everything else is in pyproject.toml. The extension is optional: where no C compiler exists the install still
succeeds, and only the native flavour is unavailable (the runtime says so and names the ort flavour).
It is built on the machine that installs the package (a robot installs from source), so it may use that CPU's
vector units: AVX2 + FMA on x86-64 (every x86 robot computer of the last decade; the AVX-512 build measured
slower here), NEON, which is baseline, on aarch64 (Jetson).
"""
import platform

from setuptools import Extension, setup

# -fopenmp-simd: the simd pragmas of the reductions (no OpenMP runtime). -fno-trapping-math -fno-math-errno: the
# code never reads FP exception flags or errno; without them gcc keeps the selects of the sigmoid / exp loops as
# branches and leaves those loops scalar. Results on finite inputs are unchanged.
flags = ["-O3", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno"]
if platform.machine().lower() in ("x86_64", "amd64"):
    flags += ["-mavx2", "-mfma"]

setup(ext_modules=[Extension("lram.runtime._xlstm_native", ["runtime/xlstm_native.c"], extra_compile_args=flags,
                             optional=True)])
