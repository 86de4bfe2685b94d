"""Issue 14, defects 9 and 11: bad model files give one line, not a traceback; output paths are checked before
the work starts; SIGTERM (what a service manager sends) still gets `lram run` to write its report."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lram.cli.main import cli

_FAKE = Path(__file__).parents[1] / "runtime" / "fake_policy.py"


def _fake():
    name = "lram_tests_runtime_fake_policy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _FAKE)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _fake().write_pendulum_policy(tmp_path_factory.mktemp("cli") / "pendulum.onnx")


@pytest.fixture
def a_file(tmp_path):
    """A regular file: a path below it cannot be written, even by root (which ignores permission bits)."""
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    return f


def _invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(res, *words):
    assert res.exit_code != 0
    assert isinstance(res.exception, SystemExit), f"traceback instead of an error: {res.exception!r}"
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, res.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture(params=["empty", "truncated", "random"])
def bad_model(request, tmp_path, model):
    path = tmp_path / f"{request.param}.onnx"
    data = model.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 3],
                      "random": os.urandom(4096)}[request.param])
    return path


def test_11_compile_check_bad_file(bad_model):
    _one_line_error(_invoke(["compile", bad_model, "--check"]), bad_model.name, "ONNX")


def test_11_calibrate_bad_file(bad_model, tmp_path):
    _one_line_error(_invoke(["calibrate", bad_model, "--precision", "fp16", "-o", tmp_path / "out.onnx"]),
                    bad_model.name, "ONNX")


def test_11_calibrate_output_unwritable(model, a_file):
    out = a_file / "out.onnx"
    _one_line_error(_invoke(["calibrate", model, "--precision", "fp16", "-o", out, "--no-check"]), "-o", str(a_file))
    assert not list(a_file.parent.glob(".*staging*"))


@pytest.mark.parametrize("option,target", [("--report", "r.json"), ("--plots", "plots")])
def test_11_run_output_checked_before_the_run(model, a_file, option, target):
    t = time.perf_counter()
    res = _invoke(["run", model, "--env", "gym:Pendulum-v1", "--episodes", "1", "--no-realtime", "--warmup", "0",
                   option, a_file / target])
    _one_line_error(res, option, str(a_file))
    assert "success rate" not in res.output  # refused before the run, not after it
    assert time.perf_counter() - t < 30


def test_11_verify_json_checked_before_the_work(model, a_file, tmp_path):
    res = _invoke(["verify", model, "--against", tmp_path / "no-such-checkpoint", "--json", a_file / "v.json"])
    _one_line_error(res, "--json", str(a_file))


def test_9_sigterm_still_writes_the_report(model, tmp_path):
    report = tmp_path / "r.json"
    lram = Path(sys.executable).with_name("lram")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(lram), "run", str(model), "--env", "gym:Pendulum-v1", "--episodes", "100000",
                             "--no-realtime", "--warmup", "0", "--report", str(report)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    err = bytearray()

    def drain():
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.time() + 60
    # the bar counts finished episodes: once one is done the loop is running
    while not re.search(rb"[1-9][0-9]*/100000", err) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, err.decode(errors="replace")[-2000:]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    reader.join(timeout=5)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode(errors="replace")[-2000:]
    d = json.loads(report.read_text())
    assert d["stop_reason"] == "terminated" and d["ticks"] >= 200
    assert b"Traceback" not in err
