"""The kernel tests run the Triton kernels on the CPU through Triton's interpreter, which is chosen when
@triton.jit runs: TRITON_INTERPRET=1 must be set before triton is first imported in this process. The
ahead-of-time build (compiler mode) therefore runs in a subprocess, once per session (``aot_dir``)."""
import os
import subprocess
import sys

import pytest

from lram.kernels import interpret

interpret.enable()


@pytest.fixture(scope="session")
def aot_dir(tmp_path_factory):
    """PTX + cubins + resources.json for sm_87, sm_90 and Thor, built by `python -m lram.kernels.build`."""
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("kernels")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "lram.kernels.build", "--out", str(out)], capture_output=True, text=True,
                       env=env, timeout=300)
    return out, r
