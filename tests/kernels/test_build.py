"""Compile the fused kernels with nvcc on every run: PTX for sm_87/sm_90/Thor, a cubin for sm_90."""
import re
import shutil
import time

import pytest

from lram.kernels import build as kb

try:
    NVCC = kb.find_nvcc()
except kb.NvccNotFound as e:
    NVCC = None
    REASON = str(e)

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not installed: cannot compile CUDA kernels here")


def test_ptx_all_archs_and_cubin(tmp_path):
    t0 = time.time()
    res = kb.build(tmp_path, archs=("87", "90", "thor"), kinds=("ptx",))
    res.update(kb.build(tmp_path, archs=("90",), kinds=("cubin",)))
    assert time.time() - t0 < 60
    thor = kb.resolve_arch("thor", kb.list_archs())
    assert thor in ("110", "101")
    for kernel, entry in kb.ENTRY_POINTS.items():
        for arch in ("87", "90", thor):
            ptx = res[(kernel, arch, "ptx")].read_text()
            assert re.search(rf"\.entry\s+{entry}\s*\(", ptx), f"{entry} missing from {kernel} sm_{arch} PTX"
            assert f".target sm_{arch}" in ptx
        cubin = res[(kernel, "90", "cubin")].read_bytes()
        assert cubin[:4] == b"\x7fELF" and entry.encode() in cubin


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(RuntimeError, match="cannot target sm_12345"):
        kb.resolve_arch("12345", kb.list_archs())


def test_missing_nvcc_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("NVCC", raising=False)
    monkeypatch.setenv("CUDA_HOME", "/nonexistent")
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(kb.Path, "is_file", lambda self: False)
    with pytest.raises(kb.NvccNotFound, match="CUDA toolkit"):
        kb.find_nvcc()


def test_cli_main(tmp_path, capsys):
    assert kb.main(["--out", str(tmp_path), "--arch", "90", "--kind", "ptx"]) == 0
    assert "lram_mlstm" not in capsys.readouterr().err
    assert (tmp_path / "mlstm_step.sm_90.ptx").exists()
