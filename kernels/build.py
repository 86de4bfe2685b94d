"""Compile the Triton step kernels ahead of time (no GPU needed): PTX + cubin per target, and a resource report.

    python -m lram.kernels.build --out build/kernels [--arch 87 90 thor] [--kernel mlstm_step slstm_step]

Writes, per kernel and target, ``<kernel>.sm_<cc>.ptx`` and ``<kernel>.sm_<cc>.cubin`` plus
``resources.json`` (registers, spills, stack, shared memory per kernel and target, from ptxas -v and the
cuobjdump bundled with Triton). Exit code 1 when a kernel spills registers or uses local memory.

Targets: sm_87 (Jetson Orin), sm_90 (Hopper; Triton compiles for sm_90a), Thor = sm_110 (sm_110a, with the
ptxas of CUDA 13 that Triton 3.9 bundles). PTX ISA versions are the oldest the target's platform driver
JIT-compiles: 8.5 for sm_87 and sm_90 (CUDA 12.6 = JetPack 6; Hopper boxes run 12.x or newer), 9.0 for
Thor (CUDA 13.0 = JetPack 7.0). ``sm_87`` PTX is the portable artifact (the driver JIT-compiles it on Orin,
Hopper and Thor alike); the ``a`` targets' PTX runs only on its own architecture.

The Triton ABI appends two pointer parameters (global and profile scratch) after the kernel's own ones.
These kernels use neither (checked: both sizes 0 and the parameters unreferenced), so they are removed from
the PTX: the entry point then takes exactly inputs..., B, T, NH, DH, outputs..., the order TensorRT's AOT
plugins pass, and the cubins are assembled from that PTX so PTX and cubin have the same signature.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ARCHS = {"87": dict(cc=87, ptx_version=85), "90": dict(cc=90, ptx_version=85), "110": dict(cc=110, ptx_version=90)}
ALIASES = {"orin": "87", "hopper": "90", "thor": "110", "101": "110"}  # CUDA 13 renamed Thor sm_101 -> sm_110
DEFAULT_ARCHS = ("87", "90", "thor")
KERNEL_NAMES = ("mlstm_step", "slstm_step")


class BuildError(RuntimeError):
    pass


def resolve_arch(arch) -> str:
    a = str(arch).lower().removeprefix("sm_").removeprefix("compute_").rstrip("a")
    a = ALIASES.get(a, a)
    if a not in ARCHS:
        raise BuildError(f"unknown target {arch!r}: choose from 87 (Orin), 90 (Hopper), 110 / thor (Thor)")
    return a


@dataclass
class Artifact:
    kernel: str
    entry: str
    arch: str  # "87", "90", "110"
    sm: str  # what ptxas was given: sm_87, sm_90a, sm_110a
    ptx_version: str
    ptx: str
    cubin: bytes
    num_warps: int
    shared: int  # dynamic shared memory bytes the launch must pass
    params: list  # PTX parameter types in order
    resources: dict


def _import_triton():
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        raise BuildError("Triton is not installed: pip install 'lram-deploy[kernels]'") from None
    from triton import knobs

    if knobs.runtime.interpret:
        raise BuildError("TRITON_INTERPRET=1 is set: the ahead-of-time build needs the compiler, unset it")
    return triton, ASTSource, GPUTarget, knobs


def signature(kernel: str) -> tuple[dict, dict, int]:
    """(signature, constexprs, num_warps) for triton.compile: fp32 pointers, int32 scalars, the tile constants."""
    from . import step_kernels as sk

    fn, ins, outs, const, warps = sk.KERNELS[kernel]
    names = fn.arg_names
    n_io = len(ins) + len(sk.SCALARS) + len(outs)
    sig = {}
    for i, name in enumerate(names[:n_io]):
        sig[name] = "i32" if len(ins) <= i < len(ins) + len(sk.SCALARS) else "*fp32"
    sig.update({c: "constexpr" for c in const})
    return sig, dict(const), warps


_ENTRY = re.compile(r"(\.visible\s+\.entry\s+(\w+)\s*\()([^)]*)(\))", re.S)


def entry_params(ptx: str) -> tuple[str, list[tuple[str, str]]]:
    """(entry name, [(type, name), ...]) of the PTX's kernel."""
    m = _ENTRY.search(ptx)
    if not m:
        raise BuildError("no .entry in the PTX")
    decls = [d.split() for d in m.group(3).split(",") if d.strip()]  # .param .u64 [.ptr .global .align 1] NAME
    return m.group(2), [(d[1].lstrip("."), d[-1]) for d in decls]


def strip_abi_params(ptx: str, n_user: int) -> str:
    """Remove the parameters Triton appends after the kernel's own n_user ones (scratch pointers), after
    checking that the body never reads them."""
    m = _ENTRY.search(ptx)
    decls = [d.strip() for d in m.group(3).split(",") if d.strip()]
    _, params = entry_params(ptx)
    if len(decls) != len(params) or len(params) < n_user:
        raise BuildError(f"unexpected kernel parameter list ({len(params)} parameters, {n_user} expected first)")
    body = ptx[m.end():]
    for _, name in params[n_user:]:
        if re.search(rf"\b{name}\b", body):
            raise BuildError(f"the kernel reads Triton ABI parameter {name}: it needs scratch memory, cannot strip")
    kept = ",\n\t".join(decls[:n_user])
    return ptx[:m.start(3)] + "\n\t" + kept + "\n" + ptx[m.end(3):]


def _ptxas(knobs, cc: int) -> str:
    tool = knobs.nvidia.ptxas if cc < 90 else knobs.nvidia.ptxas_blackwell  # what Triton itself picks
    return tool.path


def assemble(ptx: str, sm: str, ptxas: str) -> tuple[bytes, dict]:
    """ptxas the PTX into a cubin (Triton's flags); returns (cubin, ptxas -v figures)."""
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "k.ptx", Path(d) / "k.cubin"
        src.write_text(ptx)
        cmd = [ptxas, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={sm}", str(src), "-o", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"ptxas failed for {sm}:\n{r.stderr or r.stdout}")
        log = r.stderr + r.stdout
        return out.read_bytes(), _parse_ptxas_log(log)


def _parse_ptxas_log(log: str) -> dict:
    def num(pattern):
        m = re.search(pattern, log)
        return int(m.group(1)) if m else None

    return {"registers": num(r"Used (\d+) registers"), "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads"), "stack_frame": num(r"(\d+) bytes stack frame")}


def res_usage(cubin: bytes, cuobjdump: str) -> dict:
    """cuobjdump -res-usage of one cubin: {'REG': .., 'STACK': .., 'SHARED': .., 'LOCAL': ..}."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        r = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"cuobjdump -res-usage failed: {r.stderr.strip()}")
    line = next((ln for ln in r.stdout.splitlines() if "REG:" in ln), "")
    return {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line)}


def compile_kernel(kernel: str, arch="87") -> Artifact:
    """PTX (scratch parameters stripped) + cubin of one kernel for one target, with its resource usage."""
    from . import step_kernels as sk

    triton, ASTSource, GPUTarget, knobs = _import_triton()
    a = resolve_arch(arch)
    cfg = ARCHS[a]
    fn, ins, outs, _, _ = sk.KERNELS[kernel]
    sig, const, warps = signature(kernel)
    try:
        ck = triton.compile(ASTSource(fn, sig, constexprs=const), target=GPUTarget("cuda", cfg["cc"], 32),
                            options={"num_warps": warps, "ptx_version": cfg["ptx_version"], "enable_fp_fusion": True})
    except Exception as e:  # the compiler's own error text is the useful part
        raise BuildError(f"Triton failed to compile {kernel} for sm_{a}: {type(e).__name__}: {e}") from None
    md = ck.metadata
    if (md.global_scratch_size or 0) or (getattr(md, "profile_scratch_size", 0) or 0):
        raise BuildError(f"{kernel} needs Triton scratch memory; the AOT launch contract has no room for it")
    n_user = len(ins) + len(sk.SCALARS) + len(outs)
    ptx = strip_abi_params(ck.asm["ptx"], n_user)
    sm = re.search(r"\.target\s+(\w+)", ptx).group(1)
    cubin, ptxas_figures = assemble(ptx, sm, _ptxas(knobs, cfg["cc"]))
    usage = res_usage(cubin, knobs.nvidia.cuobjdump.path)
    entry, params = entry_params(ptx)
    version = re.search(r"\.version\s+([\d.]+)", ptx).group(1)
    resources = {**ptxas_figures, "cuobjdump": usage, "dynamic_shared": md.shared, "num_warps": md.num_warps,
                 "threads": md.num_warps * 32}
    return Artifact(kernel, entry, a, sm, version, ptx, cubin, md.num_warps, md.shared, [t for t, _ in params],
                    resources)


def spills(art: Artifact) -> list[str]:
    """Why this artifact fails the resource check (empty when it passes)."""
    r, bad = art.resources, []
    for key in ("spill_stores", "spill_loads"):
        if r.get(key):
            bad.append(f"{r[key]} bytes {key.replace('_', ' ')}")
    if r["cuobjdump"].get("LOCAL"):
        bad.append(f"{r['cuobjdump']['LOCAL']} bytes local memory")
    return bad


def build(out_dir, archs=DEFAULT_ARCHS, kernels=KERNEL_NAMES) -> dict:
    """Compile every kernel for every target into out_dir; returns the report written to resources.json."""
    import triton

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"triton": triton.__version__, "kernels": {}, "spills": []}
    for k in kernels:
        for arch in archs:
            art = compile_kernel(k, arch)
            _write(out / f"{k}.sm_{art.arch}.ptx", art.ptx.encode())
            _write(out / f"{k}.sm_{art.arch}.cubin", art.cubin)
            meta = {x: y for x, y in asdict(art).items() if x not in ("ptx", "cubin")}
            report["kernels"][f"{k}.sm_{art.arch}"] = meta
            report["spills"] += [f"{k} {art.sm}: {b}" for b in spills(art)]
    _write(out / "resources.json", json.dumps(report, indent=2, sort_keys=True).encode())
    return report


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def resource_table(report: dict) -> str:
    rows = ["| kernel | target | PTX ISA | registers | spill stores / loads | stack | shared (dynamic) | threads |",
            "|---|---|---|---|---|---|---|---|"]
    for name, a in sorted(report["kernels"].items()):
        r = a["resources"]
        rows.append(f"| {a['entry']} | {a['sm']} | {a['ptx_version']} | {r['registers']} | {r['spill_stores']} / "
                    f"{r['spill_loads']} | {r['cuobjdump'].get('STACK')} | {r['dynamic_shared']} B | {r['threads']} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lram.kernels.build", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/kernels", help="output directory (default build/kernels)")
    ap.add_argument("--arch", nargs="+", default=list(DEFAULT_ARCHS), help="87 (Orin), 90 (Hopper), thor / 110")
    ap.add_argument("--kernel", nargs="+", default=list(KERNEL_NAMES), choices=list(KERNEL_NAMES))
    a = ap.parse_args(argv)
    try:
        archs = [resolve_arch(x) for x in a.arch]
        report = build(a.out, archs, a.kernel)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(resource_table(report))
    print(f"wrote {a.out}/ (PTX, cubins, resources.json)")
    if report["spills"]:
        print("error: register spills / local memory: " + "; ".join(report["spills"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
