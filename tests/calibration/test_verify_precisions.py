"""lram verify on one code path for every pair: FP16 / INT8 graphs against their FP32 graph (state compared by
its declared roles), an FP32 graph against itself, and a graph against a broken copy."""
import json

from click.testing import CliRunner

from lram.cli.verify_commands import verify_

from .conftest import scramble


def _verify(*args):
    return CliRunner().invoke(verify_, [str(a) for a in args])


def test_fp16_against_fp32_passes_with_the_state_compared(fp32_graph, fp16_graph, tmp_path):
    out = tmp_path / "v.json"
    r = _verify(fp16_graph, "--against", fp32_graph, "--steps", 60, "--robots", 2, "--window", 30, "--json", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["passed"] and rep["atol"] == 0.05 and rep["rtol"] == 0.02  # FP16's tolerance, by precision
    assert 0 < rep["max_state_error"] < 0.05 and 0 < rep["max_abs_logit_diff"] < 0.05


def test_int8_is_reported_not_gated_on_logits(fp32_graph, int8_graph, tmp_path):
    out = tmp_path / "v.json"
    r = _verify(int8_graph, "--against", fp32_graph, "--steps", 40, "--robots", 2, "--window", 40, "--json", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["atol"] is None and rep["worst_excess"] is None and "not gated" in r.output
    assert rep["max_state_error"] is not None and rep["passed"]


def test_a_graph_against_itself_is_exact(fp32_graph):
    r = _verify(fp32_graph, "--against", fp32_graph, "--steps", 20, "--robots", 2, "--window", 20)
    assert r.exit_code == 0 and "max |dlogit| 0.00e+00" in r.output, r.output


def test_a_broken_fp16_graph_fails_on_the_state(fp32_graph, fp16_graph, tmp_path):
    broken = scramble(fp16_graph, tmp_path / "broken.onnx")
    r = _verify(broken, "--against", fp32_graph, "--steps", 40, "--robots", 2, "--window", 40)
    assert r.exit_code == 1 and "FAIL" in r.output and "state diverged" in r.output, r.output


def test_an_engine_without_tensorrt_is_a_clear_error(fp32_graph, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on every machine here: no TensorRT
    from lram.runtime.manifest import sidecar_path

    engine = tmp_path / "policy.engine"
    engine.write_bytes(b"not really an engine")
    r = _verify(engine, "--against", fp32_graph, "--steps", 2)
    assert r.exit_code == 1 and "no manifest" in r.output, r.output  # an engine's manifest is its sidecar
    sidecar_path(engine).write_text(sidecar_path(fp32_graph).read_text())
    r = _verify(engine, "--against", fp32_graph, "--steps", 2)
    assert r.exit_code == 1 and "TensorRT is not installed" in r.output and "Traceback" not in r.output, r.output
