"""The regression gate on synthetic ratios, and a deliberately slowed graph failing ``lram bench --check``."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lram.bench import gate as g
from lram.bench.latency import direction, slowed


def _baseline(tol=0.3, **entries):
    return {"schema": g.BASELINE_SCHEMA, "tolerance": tol, "ratios": entries}


def test_lower_is_better_regresses_past_the_tolerance():
    base = _baseline(a={"value": 0.5, "better": "lower"})
    assert g.check({"a": 0.64}, base).ok  # +28%: inside 30 %
    r = g.check({"a": 0.66}, base)  # +32%
    assert not r.ok and [x.key for x in r.regressions] == ["a"]
    assert r.rows[0].limit == pytest.approx(0.65)
    assert g.check({"a": 0.3}, base).rows[0].status == "improved"


def test_higher_is_better_regresses_when_it_drops():
    base = _baseline(dt={"value": 2.6, "better": "higher"})
    assert g.check({"dt": 2.1}, base).ok  # 2.6 / 1.3 = 2.0 is the limit
    assert not g.check({"dt": 1.9}, base).ok
    assert g.check({"dt": 9.0}, base).rows[0].status == "improved"


def test_per_ratio_tolerance_and_not_measured():
    base = _baseline(0.1, a={"value": 1.0, "better": "lower", "tolerance": 1.0}, b={"value": 1.0, "better": "lower"})
    r = g.check({"a": 1.9}, base)  # a within its own 100 %, b not measured (quick mode measures a subset)
    assert r.ok and r.checked == 1
    assert [x.status for x in r.rows] == ["ok", "not measured"]
    assert not g.check({"other": 1.0}, base).ok  # nothing checked is a failure
    assert "none of the baseline" in g.check({}, base).format()


@pytest.mark.parametrize("bad, msg", [
    ({"schema": "x"}, "not a benchmark baseline"),
    (_baseline(0, a={"value": 1, "better": "lower"}), "tolerance"),
    (_baseline(), "no ratios"),
    (_baseline(a={"value": 1, "better": "up"}), "better"),
    (_baseline(a={"value": -1, "better": "lower"}), "value"),
])
def test_malformed_baselines(bad, msg):
    with pytest.raises(g.GateError, match=msg):
        g.check({}, bad)


def test_make_baseline_round_trip(tmp_path):
    ratios = {"tiny.b1.export_over_eager": 0.05, "16M.b1.dt_over_lram@800": 1.7}
    dirs = {k: direction(k) for k in ratios}
    assert dirs == {"tiny.b1.export_over_eager": "lower", "16M.b1.dt_over_lram@800": "higher"}
    data = g.make_baseline(ratios, dirs, 0.4, tolerances={"tiny.": 0.8})
    p = tmp_path / "b.json"
    p.write_text(json.dumps(data))
    loaded = g.load_baseline(p)
    assert loaded["ratios"]["tiny.b1.export_over_eager"]["tolerance"] == 0.8
    assert "tolerance" not in loaded["ratios"]["16M.b1.dt_over_lram@800"]
    assert g.check(ratios, loaded).ok


def test_slowed_wrapper_takes_longer():
    import time

    def work():
        t = time.perf_counter()
        while time.perf_counter() - t < 0.002:
            pass
        return 7

    t0 = time.perf_counter()
    assert slowed(work, 3.0)() == 7
    assert time.perf_counter() - t0 >= 0.006
    assert slowed(work, 1.0) is work


def test_a_slowed_graph_fails_the_check(tiny_report, tmp_path):
    """A normal run gives the baseline; the same bench with every LRAM ORT call made 4x slower must fail
    ``lram bench --check`` on the export ratios (the wait scales with each call, so load cannot hide it)."""
    normal = tiny_report
    base = g.make_baseline(normal["ratios"], normal["directions"], 0.5)
    assert g.check(normal["ratios"], base).ok
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(base))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        __import__("lram.cli.bench_commands", fromlist=["bench"]).bench,
        ["--presets", "tiny", "--batches", "1", "--positions", "20", "--contexts", "20", "--group-seconds", "0.3",
         "--no-sequential", "--no-plots", "-o", str(out), "--check", str(path), "--inject-slowdown", "4"])
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output and "tiny.b1.export_over_eager" in res.output
    report = json.loads((out / "report.json").read_text())
    assert report["inject_slowdown"] == 4.0
    regressed = {r.key for r in g.check(report["ratios"], base).regressions}
    assert {"tiny.b1.export_over_eager", "tiny.b1.export_over_floor", "tiny.b1.dt_over_lram@20"} <= regressed
    assert (out / "gate.txt").read_text().startswith("ratio")
