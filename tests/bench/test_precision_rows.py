"""The preset bench's precision rows: every reduced-precision graph beside its flavour's FP32 graph, in the same
rounds, each ratio paired with the FP32 graph of its own flavour."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from lram.bench.latency import BenchConfig, make_models
from lram.bench.precision_rows import ROWS, rows_for, synthetic_calibration, write_rows
from lram.bench.precision_rows import ratios as precision_ratios
from lram.bench.report import markdown
from lram.export.onnx_export import export_onnx
from lram.runtime.model_files import read_manifest


def test_every_row_is_timed_beside_fp32(tiny_report):
    pr = tiny_report["presets"]["tiny"]
    br = pr["batches"]["1"]
    assert set(ROWS) <= set(br["paths"])  # in the paths group, with the FP32 rows and the bandwidth probe
    fp32_bytes = pr["lram"]["graph_weight_bytes"]
    for row, (flavour, precision) in ROWS.items():
        info = pr["lram"]["precision_rows"][row]
        assert (info["flavour"], info["precision"]) == (flavour, precision)
        # fewer bytes than the FP32 graph (weights, or the bf16 state): the floor is its own
        if precision == "bf16-state":
            assert info["graph_weight_bytes"] == fp32_bytes
            assert info["state_bytes_per_robot"] < pr["lram"]["state_bytes_per_robot"]
        else:
            assert info["graph_weight_bytes"] < fp32_bytes
        assert 0 < info["nodes"]["optimised"] <= info["nodes"]["exported"]
        assert 0 < br["precision_floor_ms"][row] < br["floor_ms"]
        for r in (f"precision_over_fp32@{row}", f"precision_over_floor@{row}"):
            assert br["ratios"][r] > 0 and tiny_report["ratios"][f"tiny.b1.{r}"] == br["ratios"][r]
            assert tiny_report["directions"][f"tiny.b1.{r}"] == "lower"
    md = markdown(tiny_report)
    assert "Precisions side by side" in md
    for precision in ("fp32", "fp16", "int8", "int8-nbits", "int4-nbits"):
        assert f"| tiny | 1 | standard | {precision} |" in md
    assert "| tiny | 1 | ort | int4-nbits |" in md and "| tiny | 1 | ort | fp16 |" not in md
    assert "| tiny | 1 | native | int8-nbits |" in md and "| tiny | 1 | native | fp32 |" in md


def test_ratios_pair_each_row_with_its_own_flavour():
    rounds = np.arange(1.0, 9.0)[:, None] * np.ones((1, 3))  # load drifting 8x across rounds
    paths = {"ort_chunk": 2 * rounds, "ort_fused": rounds, "standard_fp16": 3 * rounds,
             "ort_int8-nbits": 0.5 * rounds}
    floors = {"standard_fp16": 0.5 * rounds[:, 0], "ort_int8-nbits": 0.25 * rounds[:, 0]}
    r = precision_ratios(paths, floors, ["standard_fp16", "ort_int8-nbits"])
    assert r["precision_over_fp32@standard_fp16"] == pytest.approx(1.5)  # against the standard FP32 row
    assert r["precision_over_fp32@ort_int8-nbits"] == pytest.approx(0.5)  # against the ort FP32 row
    assert r["precision_over_floor@standard_fp16"] == pytest.approx(6.0)
    assert r["precision_over_floor@ort_int8-nbits"] == pytest.approx(2.0)


def test_unknown_precisions_are_refused():
    assert rows_for(("int8-nbits",)) == ["standard_int8-nbits", "ort_int8-nbits", "native_int8-nbits"]
    assert rows_for(()) == []
    with pytest.raises(ValueError, match="unknown precision.*int3"):
        BenchConfig(precisions=("int3",))
    from lram.cli.bench_commands import bench

    res = CliRunner().invoke(bench, ["--presets", "tiny", "--precisions", "fp16,int3"])
    assert res.exit_code != 0 and "int3" in res.output and "Traceback" not in res.output


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory):
    lram, _ = make_models("tiny", BenchConfig(presets=("tiny",), contexts=(20,)))
    d = tmp_path_factory.mktemp("precision-rows")
    return {"standard": export_onnx(lram, d / "tiny.onnx"), "ort": export_onnx(lram, d / "tiny_ort.onnx", flavour="ort"),
            "native": export_onnx(lram, d / "tiny_native.onnx", flavour="native")}, d


def test_rows_are_written_by_the_calibration_passes(tiny_fp32):
    fp32, d = tiny_fp32
    paths = write_rows(list(ROWS), fp32, d)
    ops = {"fp16": "Cast", "int8": "QuantizeLinear", "int8-nbits": "MatMulNBits", "int4-nbits": "MatMulNBits",
           "bf16-state": "MLSTMLayer"}
    for row, path in paths.items():
        flavour, precision = ROWS[row]
        m = read_manifest(path)
        assert (m.flavour, m.precision) == (flavour, precision)
        g = onnx.load(str(path), load_external_data=False).graph
        assert any(n.op_type == ops[precision] for n in g.node), row
        assert any(n.op_type == "LinearAttention" for n in g.node) == (flavour == "ort"), row
        assert any(n.domain == "lram.native" for n in g.node) == (flavour == "native"), row
        if "nbits" in precision:
            bits = {a.i for n in g.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"}
            assert bits == {int(precision[3])}


def test_synthetic_calibration_records_the_evolving_feeds(tiny_fp32):
    fp32, _ = tiny_fp32
    cs = synthetic_calibration(fp32["standard"], steps=6)
    assert len(cs) == 6 and cs.inputs["first"].tolist() == [True] + [False] * 5
    state = [n for n in cs.inputs if n.startswith("state_in.")]
    assert state and all(np.isfinite(cs.inputs[n]).all() for n in state)
    # each sample holds the state fed at that step (copied, not a view of the stepper's buffers)
    assert any(not np.array_equal(cs.inputs[n][3], cs.inputs[n][4]) for n in state)
    assert not np.array_equal(cs.inputs["obs"][0], cs.inputs["obs"][1])
