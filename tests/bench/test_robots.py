"""Robots served at a control rate: the runtime's Policy with N robots, p99 of Policy.step against the period."""
from __future__ import annotations

import pytest

from lram.bench.latency import BenchConfig, make_models
from lram.bench.robots import robots_at_hz, served, table
from lram.export.onnx_export import export_onnx


def _counts(*p99s):
    return {str(n): {"ort": {"p99_ms": p}} for n, p in zip((1, 2, 4, 8), p99s)}


def test_served_is_the_largest_count_that_fits():
    assert served(_counts(5, 12, 19.9, 30), 20.0) == {"ort": 4}
    assert served(_counts(5, 25, 15, 21), 20.0) == {"ort": 4}  # the miss at 2 is noise: 4 robots fit
    assert served(_counts(21, 25), 20.0) == {"ort": 0}


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory):
    lram, _ = make_models("tiny", BenchConfig(presets=("tiny",), contexts=(20,)))
    return export_onnx(lram, tmp_path_factory.mktemp("robots") / "tiny_ort.onnx", flavour="ort")


def test_robots_at_hz_on_the_tiny_graph(tiny_graph):
    sec = robots_at_hz({"ort": tiny_graph, "again": tiny_graph}, 50.0, counts=(2, 1), steps=20, warmup=2, block=5)
    assert list(sec["per_count"]) == ["1", "2"]
    for res in sec["per_count"].values():
        assert set(res) == {"ort", "again"}
        assert all(v["steps"] == 20 and 0 < v["p50_ms"] <= v["p99_ms"] <= v["max_ms"] < 20 for v in res.values())
    assert sec["robots"] == {"ort": 2, "again": 2} and sec["at_least"]["ort"]
    assert (sec["threads"], sec["processes"], sec["period_ms"]) == (1, 1, 20.0)
    assert "ort **>= 2**" in table(sec)


def test_the_search_stops_after_two_counts_every_graph_misses(tiny_graph):
    sec = robots_at_hz({"ort": tiny_graph}, 1e6, counts=(1, 2, 4), steps=10, warmup=1, block=5)  # 1 us period
    assert list(sec["per_count"]) == ["1", "2"] and sec["robots"] == {"ort": 0} and not sec["at_least"]["ort"]
    assert "(miss)" in table(sec)
    with pytest.raises(ValueError, match="hz"):
        robots_at_hz({"ort": tiny_graph}, 0)
