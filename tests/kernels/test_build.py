"""Ahead-of-time build of the Triton kernels on the CPU: PTX + cubin for sm_87, sm_90 and Thor, resources."""
import json
import re

import pytest

from lram.kernels import build as kb

N_PARAMS = {"mlstm_step": 9 + 4 + 4, "slstm_step": 8 + 4 + 5}  # inputs, B T NH DH, outputs: no ABI extras
SM = {"87": "sm_87", "90": "sm_90a", "110": "sm_110a"}


def test_build_all_targets(aot_dir):
    out, r = aot_dir
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((out / "resources.json").read_text())
    assert rep["spills"] == []
    for kernel, n in N_PARAMS.items():
        for arch, sm in SM.items():
            ptx = (out / f"{kernel}.sm_{arch}.ptx").read_text()
            entry, params = kb.entry_params(ptx)
            assert entry == f"lram_{kernel.replace('_step', '')}_step_f32"
            assert len(params) == n and [t for t, _ in params] == rep["kernels"][f"{kernel}.sm_{arch}"]["params"]
            assert re.search(rf"\.target\s+{sm}\b", ptx)
            cubin = (out / f"{kernel}.sm_{arch}.cubin").read_bytes()
            assert cubin[:4] == b"\x7fELF" and entry.encode() in cubin
            res = rep["kernels"][f"{kernel}.sm_{arch}"]["resources"]
            assert res["registers"] and res["registers"] == res["cuobjdump"]["REG"]
            assert res["spill_stores"] == 0 and res["spill_loads"] == 0 and res["cuobjdump"]["LOCAL"] == 0
    assert "| lram_mlstm_step_f32 | sm_87 |" in r.stdout  # the resource table


def _art(**res):
    base = {"registers": 40, "spill_stores": 0, "spill_loads": 0, "stack_frame": 0, "cuobjdump": {"LOCAL": 0},
            "dynamic_shared": 0, "threads": 128}
    base.update(res)
    return kb.Artifact("mlstm_step", "e", "87", "sm_87", "8.5", "", b"", 4, 0, [], base)


def test_spills_fail_the_build(tmp_path, monkeypatch):
    assert kb.spills(_art()) == []
    assert kb.spills(_art(spill_stores=8)) == ["8 bytes spill stores"]
    assert kb.spills(_art(cuobjdump={"LOCAL": 16})) == ["16 bytes local memory"]
    monkeypatch.setattr(kb, "compile_kernel", lambda k, a: _art(spill_loads=4))
    assert kb.main(["--out", str(tmp_path), "--arch", "87", "--kernel", "mlstm_step"]) == 1


PTX = """.version 8.5
.target sm_87
.visible .entry k(
\t.param .u64 .ptr .global .align 1 k_param_0,
\t.param .u32 k_param_1,
\t.param .u64 .ptr .global .align 1 k_param_2,
\t.param .u64 .ptr .global .align 1 k_param_3
)
{
\tld.param.u64 %rd1, [k_param_0];
\tld.param.u32 %r1, [k_param_1];
}
"""


def test_strip_abi_params():
    out = kb.strip_abi_params(PTX, 2)
    assert kb.entry_params(out) == ("k", [("u64", "k_param_0"), ("u32", "k_param_1")])
    assert out.endswith(PTX[PTX.index(")"):])
    with pytest.raises(kb.BuildError, match="reads Triton ABI parameter k_param_1"):
        kb.strip_abi_params(PTX, 1)


def test_clear_errors():
    with pytest.raises(kb.BuildError, match="unknown target"):
        kb.resolve_arch("75")
    assert kb.resolve_arch("thor") == kb.resolve_arch("sm_110a") == kb.resolve_arch("101") == "110"
    with pytest.raises(kb.BuildError, match="TRITON_INTERPRET=1 is set"):  # this test process interprets
        kb.compile_kernel("mlstm_step", "87")


def _system_ptxas():
    import shutil
    from pathlib import Path

    for c in (shutil.which("ptxas"), "/usr/local/cuda/bin/ptxas"):
        if c and Path(c).is_file():
            return c
    return None


@pytest.mark.skipif(_system_ptxas() is None, reason="no CUDA toolkit ptxas besides Triton's")
def test_ptx_assembles_with_the_toolkit_ptxas(aot_dir):
    """The shipped PTX through an independent (older) ptxas, e.g. CUDA 13.0's = JetPack 7.0's: stands in for
    the driver JIT of an older platform, which must accept the PTX ISA versions the build chose."""
    import subprocess

    out, r = aot_dir
    assert r.returncode == 0
    for kernel in N_PARAMS:
        for arch, sm in SM.items():
            p = subprocess.run([_system_ptxas(), f"--gpu-name={sm}", str(out / f"{kernel}.sm_{arch}.ptx"), "-o",
                                str(out / f"check.{kernel}.{arch}.cubin")], capture_output=True, text=True)
            assert p.returncode == 0, p.stderr
