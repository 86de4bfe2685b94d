"""Calibration data errors, the gate's logic, and a broken graph failing end to end (report + CLI)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner

from lram.calibration.accuracy import compare, gate
from lram.runtime.model_files import read_manifest
from lram.calibration.record import CalibrationDataError, CalibrationSet, load_calibration, save_calibration

from .conftest import build_graph, scramble


def test_data_roundtrip_and_positions(calib, fp32_graph, tmp_path):
    p = save_calibration(calib, tmp_path / "c.npz")
    cs = load_calibration(p, read_manifest(fp32_graph))
    assert len(cs) == len(calib) >= 32
    assert cs.meta["config_hash"] == read_manifest(fp32_graph).model["config_hash"]
    assert len(set(cs.episodes.tolist())) == 4 and cs.positions.max() > 20  # spread over episodes and positions
    assert "state_in.0.C" in cs.inputs and cs.inputs["state_in.0.C"].shape[0] == len(cs)


def test_data_from_another_model(calib, tmp_path):
    other = build_graph(tmp_path / "other.onnx", task={**__import__("tests.calibration.conftest", fromlist=["x"]).PENDULUM_TASK,
                                                          "target_return": -100.0})
    p = save_calibration(calib, tmp_path / "c.npz")
    with pytest.raises(CalibrationDataError, match="another model"):
        load_calibration(p, read_manifest(other))


def test_too_few_samples(calib, fp32_graph, tmp_path):
    p = save_calibration(calib, tmp_path / "c.npz")
    with pytest.raises(CalibrationDataError, match="at least 1000"):
        load_calibration(p, read_manifest(fp32_graph), min_samples=1000)


def test_nan_in_recording(calib, fp32_graph, tmp_path):
    inputs = {k: v.copy() for k, v in calib.inputs.items()}
    inputs["state_in.1.c"][5, 3] = np.nan
    bad = CalibrationSet(inputs, calib.positions, calib.episodes, calib.seeds, dict(calib.meta))
    p = save_calibration(bad, tmp_path / "c.npz")
    with pytest.raises(CalibrationDataError, match=r"non-finite values in 'state_in.1.c'.*sample 5"):
        load_calibration(p, read_manifest(fp32_graph))


def _report(drop=0.0, state=0.01, growth=1.0, nonfinite=None, agreement=0.99):
    return {"precision": "int8", "closed_loop": {"drop_points": drop, "fp32_success_rate": 0.9,
                                                 "candidate_success_rate": 0.9 - drop / 100},
            "drift": {"max_state_error": state, "growth": growth, "nonfinite_at": nonfinite},
            "agreement": {"action_agreement": agreement}}


def test_gate_logic():
    assert gate(_report())["passed"]
    assert gate(_report(drop=4.9))["passed"]
    r = gate(_report(drop=10.0))
    assert not r["passed"] and "dropped 10.0 points" in r["failures"][0]
    assert gate(_report(drop=10.0), tolerance_points=15)["passed"]
    assert not gate(_report(state=0.9))["passed"]
    assert not gate(_report(growth=5.0))["passed"]
    assert not gate(_report(nonfinite=17))["passed"]
    assert gate(_report(agreement=0.5))["passed"] and not gate(_report(agreement=0.5), min_agreement=0.9)["passed"]


def test_broken_graph_fails_the_gate(fp32_graph, fp16_graph, tmp_path):
    broken = scramble(fp16_graph, tmp_path / "broken.onnx")
    bad = compare(fp32_graph, broken, rollouts=1, drift_steps=300, window=100)
    assert not bad["gate"]["passed"] and any("diverged" in f for f in bad["gate"]["failures"]), bad["gate"]
    good = compare(fp32_graph, fp16_graph, rollouts=1, drift_steps=300, window=100)
    assert good["gate"]["passed"], good["gate"]
    assert good["drift"]["max_state_error"] < 0.02 and good["agreement"]["steps"] == 200


def test_cli_fp16_passes_and_broken_exits_nonzero(fp32_graph, tmp_path, monkeypatch):
    from lram.calibration import fp16
    from lram.cli.calibrate_commands import calibrate

    args = ["--precision", "fp16", "--rollouts", "1", "--drift-steps", "200", "--window", "100"]
    out = tmp_path / "p16.onnx"
    r = CliRunner().invoke(calibrate, [str(fp32_graph), *args, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "gate:              PASSED" in r.output and out.exists()
    assert read_manifest(out).precision == "fp16"
    rep = json.loads((tmp_path / "p16.report.json").read_text())
    assert rep["gate"]["passed"] and rep["drift"]["steps"] == 200

    real = fp16.write_fp16

    def broken_fp16(src, dst):
        info = real(src, dst)
        scramble(dst, dst)
        return info

    monkeypatch.setattr(fp16, "write_fp16", broken_fp16)
    out2 = tmp_path / "bad.onnx"
    r = CliRunner().invoke(calibrate, [str(fp32_graph), *args, "-o", str(out2)])
    assert r.exit_code == 1, r.output
    assert "FAILED" in r.output and not out2.exists() and (tmp_path / "bad.rejected.onnx").exists()


def test_cli_int8_with_foreign_data_is_a_clear_error(fp32_graph, calib, tmp_path):
    from lram.cli.calibrate_commands import calibrate

    bad = copy.copy(calib)
    bad.meta = {**calib.meta, "config_hash": "sha256:0000"}
    data = save_calibration(bad, tmp_path / "foreign.npz")
    r = CliRunner().invoke(calibrate, [str(fp32_graph), "--precision", "int8", "--data", str(data), "-o",
                                       str(tmp_path / "q.onnx")])
    assert r.exit_code != 0 and "another model" in r.output


def test_state_error_ignores_the_stabiliser_scale_but_not_real_drift():
    """(C, n, m) and (C e^-d, n e^-d, m + d) are the same memory: not divergence. A changed memory is. The
    roles come from the declared state, not from the tensor names (here deliberately meaningless)."""
    import numpy as np

    from lram.runtime.manifest import StateSpec
    from lram.verify.compare import state_error

    specs = [StateSpec("a", [4, 8, 8], role="memory", stabiliser="c", block=0, cell="mlstm"),
             StateSpec("b", [4, 8, 1], role="normaliser", stabiliser="c", block=0, cell="mlstm"),
             StateSpec("c", [4, 1, 1], role="stabiliser", block=0, cell="mlstm"),
             StateSpec("d", [16], role="hidden", block=1, cell="slstm"),
             StateSpec("e", [16], role="memory", stabiliser="g", block=1, cell="slstm"),
             StateSpec("f", [16], role="normaliser", stabiliser="g", block=1, cell="slstm"),
             StateSpec("g", [16], role="stabiliser", block=1, cell="slstm")]
    rng = np.random.default_rng(0)
    ref = {"a": rng.standard_normal((2, 4, 8, 8)), "b": rng.standard_normal((2, 4, 8, 1)),
           "c": rng.standard_normal((2, 4, 1, 1)), "d": rng.standard_normal((2, 16)),
           "e": rng.standard_normal((2, 16)), "f": rng.random((2, 16)) + 0.5, "g": rng.standard_normal((2, 16))}
    d0, d1 = rng.standard_normal((2, 4, 1, 1)) * 3, rng.standard_normal((2, 16)) * 3
    same = dict(ref)
    same["a"], same["b"], same["c"] = ref["a"] * np.exp(-d0), ref["b"] * np.exp(-d0), ref["c"] + d0
    same["e"], same["f"], same["g"] = ref["e"] * np.exp(-d1), ref["f"] * np.exp(-d1), ref["g"] + d1
    assert state_error(ref, same, specs) < 1e-9
    assert state_error(ref, dict(same, a=same["a"] * 1.5), specs) > 0.4
    assert state_error(ref, dict(same, d=same["d"] + 1.0), specs) > 0.1  # a hidden state is compared as is
    # declared as a plain memory without its stabiliser, the rescaled copy is (rightly) a different state
    plain = [StateSpec(s.name, s.shape, role="memory" if s.role == "stabiliser" else s.role, block=s.block,
                       cell=s.cell) for s in specs]
    assert state_error(ref, same, plain) > 0.4
