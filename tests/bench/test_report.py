"""The report of a small real run: every measurement present, the tables and the plots written."""
from __future__ import annotations

import json

from lram.bench.latency import SCHEMA, BenchConfig, quick_config
from lram.bench.precision_rows import ROWS
from lram.bench.report import markdown, write_outputs
from lram.bench.transformer import dt_preset, kv_cache_bytes


def test_report_has_every_measurement(tiny_report):
    r = tiny_report
    assert r["schema"] == SCHEMA and r["bandwidth_GBps"] > 0 and r["peak_rss_bytes"] > 0
    pr = r["presets"]["tiny"]
    assert pr["lram"]["state_bytes_per_robot"] > 0 and pr["lram"]["graph_weight_bytes"] > 0
    assert pr["dt"]["kv_cache_bytes_per_robot"]["20"] == kv_cache_bytes(dt_preset("tiny"), 20)
    assert pr["advance"]["state_finite"]
    br = pr["batches"]["1"]
    assert set(br["paths"]) == {"ort_chunk", "ort_fused", "ort_native", "ort_sequential", "torch_eager", "gemv", *ROWS}
    assert set(br["context"]) == {"lram@20", "lram@60", "dt@20", "dt_ort@20", "lram_bf16@20"}
    assert br["floor_ms"] > 0
    nodes = pr["lram"]["nodes"]
    assert set(nodes) == {"standard", "ort", "native"} and all(0 < n["optimised"] <= n["exported"] for n in nodes.values())
    assert nodes["native"]["optimised"] < nodes["ort"]["optimised"] < nodes["standard"]["optimised"]
    for k in ("export_over_eager", "export_over_floor", "export_over_sequential", "dt_over_lram@20",
              "position_60_over_20", "fused_over_floor", "fused_over_export", "dt_ort_over_lram@20",
              "native_over_floor", "native_over_fused", "native_over_export", "dt_ort_over_lram_bf16@20"):
        assert br["ratios"][k] > 0 and r["ratios"][f"tiny.b1.{k}"] == br["ratios"][k]
        assert r["directions"][f"tiny.b1.{k}"] in ("lower", "higher")


def test_outputs_written(tiny_report, tmp_path):
    paths = write_outputs(tiny_report, tmp_path)
    assert json.loads(paths["json"].read_text())["ratios"] == tiny_report["ratios"]
    md = paths["markdown"].read_text()
    assert md == markdown(tiny_report)
    for heading in ("Exported step vs PyTorch eager", "Decision Transformer (KV cache) vs recurrent LRAM",
                    "Memory", "All ratios"):
        assert heading in md
    names = {p.name for p in paths["plots"]}
    assert {"latency_vs_context.png", "latency_hist_tiny_b1.png", "latency_along_episode.png"} <= names
    for p in paths["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_mode_is_what_ci_runs():
    q = quick_config()
    assert q.presets == ("tiny", "16M") and q.batches == (1,) and q.mode == "quick"
    assert q.robots == () and len(q.precisions) == 5  # every precision row; the robots section is not gated
    assert set(q.contexts) <= set(q.positions)
    cfg = BenchConfig(positions=(10,), contexts=(30,))
    assert cfg.positions == (10, 30)  # every DT context has an LRAM position to pair with
