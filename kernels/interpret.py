"""Run the Triton step kernels on the CPU (Triton interpreter) on NumPy arrays.

The interpreter is chosen when ``@triton.jit`` runs, from TRITON_INTERPRET, so this module sets it before
the first import of triton and refuses clearly when triton was already imported in compiler mode.
Used by the kernel tests and by ``gpu_check --dry-run``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from .reference import rel_err

TOL = 1e-5  # max relative error against the float64 reference (the GPU check holds the GPU to the same)


def enable() -> None:
    """Switch Triton to its interpreter; must happen before triton (or lram.kernels.step_kernels) is imported."""
    if "triton" in sys.modules:
        from triton import knobs

        if not knobs.runtime.interpret:
            raise RuntimeError("triton was imported before TRITON_INTERPRET=1 was set: run the CPU kernel checks "
                               "in a fresh process (python -m lram.kernels.gpu_check --dry-run does)")
        return
    os.environ["TRITON_INTERPRET"] = "1"


def kernels() -> ModuleType:
    enable()
    from . import step_kernels

    return step_kernels


def load_variant(source: str, name: str, workdir) -> ModuleType:
    """Import a (mutated) copy of the kernel module's source as its own module (interpreter mode)."""
    enable()
    path = Path(workdir) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _t(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def mlstm(inp: dict, sk: ModuleType | None = None, strips: int | None = None) -> list[np.ndarray]:
    """mlstm_step on the arrays of reference.random_mlstm_inputs' layout -> [h, C', n', m'].

    strips: launch only the first ``strips`` column strips (the big head sizes stay cheap in the interpreter;
    columns no program covers come back NaN)."""
    import torch

    sk = sk or kernels()
    t = {k: _t(v) for k, v in inp.items()}
    B, T, NH, DH = t["q"].shape
    outs = [torch.full((B, T, NH, DH), float("nan")), *(torch.full_like(t[x], float("nan")) for x in ("C", "n", "m"))]
    sk.check_tokens(T)
    fn, _, _, const, warps = sk.KERNELS["mlstm_step"]
    grid = sk.mlstm_grid(B, NH, DH)
    grid = (min(strips, grid[0]) if strips else grid[0], grid[1])
    fn[grid](*(t[x] for x in ("q", "k", "v", "igate", "fgate", "valid", "C", "n", "m")), B, T, NH, DH, *outs,
             num_warps=warps, **const)
    return [o.numpy() for o in outs]


def slstm(inp: dict, sk: ModuleType | None = None) -> list[np.ndarray]:
    """slstm_step on the arrays of reference.random_slstm_inputs' layout -> [y, h', c', n', m']."""
    import torch

    sk = sk or kernels()
    t = {k: _t(v) for k, v in inp.items()}
    B, T, G = t["wx"].shape
    H = G // 4
    outs = [torch.full((B, T, H), float("nan"))] + [torch.full((B, H), float("nan")) for _ in range(4)]
    sk.run_slstm(t["wx"], t["valid"], t["h"], t["c"], t["n"], t["m"], t["R"], t["b"], *outs)
    return [o.numpy() for o in outs]


def compare(got, want, cols: int | None = None) -> float:
    """Max relative error over the outputs; with cols, only the first cols value columns of h and C count
    (n and m are whole: the column-0 program writes them)."""
    errs = []
    for i, (g, w) in enumerate(zip(got, want)):
        if cols is not None and i in (0, 1):
            g, w = g[..., :cols], w[..., :cols]
        if not np.all(np.isfinite(g)):
            return float("inf")
        errs.append(rel_err(g, w))
    return max(errs)
