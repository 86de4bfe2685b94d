"""Tables (markdown) and plots (PNG, matplotlib Agg) from a ``run_bench`` report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PAPER_DT_OVER_LRAM_1600 = 8.3  # paper summary: xLSTM 8.3x faster than the Transformer at context 1600 (A100)


def _ms(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}")


def _mb(x) -> str:
    return "-" if x is None else f"{x / 1e6:.2f}" if x < 1e8 else f"{x / 1e6:.0f}"


def _p50(group: dict, name: str):
    s = group.get(name)
    return None if s is None else s["p50_ms"]


def markdown(report: dict) -> str:
    L = []
    m = report["machine"]
    L.append(f"Mode `{report['mode']}`" + (f", command `{report['command']}`" if report.get("command") else "")
             + f"; {m.get('cpu', m.get('processor', '?'))}, {m.get('cores', m.get('cpus'))} CPUs, one thread (torch "
             f"{m.get('torch')}, onnxruntime {m.get('onnxruntime')}); load average at start "
             f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_start', []))}, at end "
             f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_end', []))}; run took {report['elapsed_s']:.0f} s; "
             f"streaming bandwidth (one-thread GEMV over 256 MB, median over rounds) "
             f"{report['bandwidth_GBps']:.1f} GB/s; peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB.")
    if report.get("inject_slowdown"):
        L.append(f"\n**Test run with an injected slow-down of {report['inject_slowdown']}x on every LRAM ORT call.**")
    L.append("\nAll times are medians (ms) of interleaved calls in this one run; ratios are medians of per-round "
             "ratios (paired). Compare runs by ratios only.\n")

    L.append("### Exported step vs PyTorch eager vs the memory floor\n")
    L.append("| preset | batch | ORT chunk graph, standard | ORT chunk graph, ort flavour | native flavour | "
             "ORT naive sequential | PyTorch eager step() x3 | memory floor | export / eager | export / sequential | "
             "export / floor | ort flavour / standard | ort flavour / floor | native / ort | native / floor |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, pr in report["presets"].items():
        for B, br in pr["batches"].items():
            p, r = br["paths"], br["ratios"]
            L.append(f"| {name} | {B} | {_ms(_p50(p, 'ort_chunk'))} | {_ms(_p50(p, 'ort_fused'))} | "
                     f"{_ms(_p50(p, 'ort_native'))} | "
                     f"{_ms(_p50(p, 'ort_sequential'))} | {_ms(_p50(p, 'torch_eager'))} | {_ms(br['floor_ms'])} | "
                     f"{_rx(r, 'export_over_eager')} | {_rx(r, 'export_over_sequential')} | "
                     f"{_rx(r, 'export_over_floor')} | {_rx(r, 'fused_over_export')} | {_rx(r, 'fused_over_floor')} | "
                     f"{_rx(r, 'native_over_fused')} | {_rx(r, 'native_over_floor')} |")
    L.append("\nFloor = (graph weight bytes + 2 x batch x state bytes per robot) / bandwidth of the same rounds.\n")
    counts = {n: pr["lram"]["nodes"] for n, pr in report["presets"].items() if "nodes" in pr["lram"]}
    if counts:
        L.append("| preset | " + " | ".join(f"{fl} nodes (exported / after ORT optimisation)"
                                           for fl in next(iter(counts.values()))) + " |")
        L.append("|---|" + "---|" * len(next(iter(counts.values()))))
        for n, c in counts.items():
            L.append(f"| {n} | " + " | ".join(f"{v['exported']} / {v['optimised']}" for v in c.values()) + " |")
        L.append("")

    L.extend(_precision_table(report))
    L.extend(_robots_sections(report))

    L.append("### Decision Transformer (KV cache) vs recurrent LRAM (ORT, native flavour) by context / episode position\n")
    L.append("| preset | batch | timesteps | DT step, ONNX Runtime | DT step, PyTorch eager | LRAM step at that position | "
             "DT (ORT) / LRAM | DT (eager) / LRAM | LRAM, bf16 state (opt-in) | DT (ORT) / LRAM bf16 state |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for name, pr in report["presets"].items():
        for B, br in pr["batches"].items():
            c, r = br["context"], br["ratios"]
            positions = sorted(int(k.split("@")[1]) for k in c if k.startswith("lram@"))
            for pos in positions:
                dt = _p50(c, f"dt@{pos}")
                L.append(f"| {name} | {B} | {pos} | {_ms(_p50(c, f'dt_ort@{pos}'))} | "
                         f"{_ms(dt) if dt is not None else '(window capped)'} | "
                         f"{_ms(_p50(c, f'lram@{pos}'))} | {_rx(r, f'dt_ort_over_lram@{pos}')} | "
                         f"{_rx(r, f'dt_over_lram@{pos}')} | {_ms(_p50(c, f'lram_bf16@{pos}'))} | "
                         f"{_rx(r, f'dt_ort_over_lram_bf16@{pos}')} |")
    ratios1600 = {k: v for k, v in report["ratios"].items() if k.endswith("dt_ort_over_lram@1600")}
    if ratios1600:
        L.append("\nDT (ONNX Runtime) / LRAM at 1600 timesteps: " + ", ".join(f"{k.split('.dt')[0]}: **{v:.2f}x**"
                                                             for k, v in ratios1600.items())
                 + f" (paper: {PAPER_DT_OVER_LRAM_1600}x on an A100, up to 206M, Atari; here one CPU thread).")

    L.append("\n### Latency while stepping through an episode (batch 1, exported graph)\n")
    L.append("| preset | " + " | ".join(f"steps before {p}" for p in _adv_positions(report)) + " |")
    L.append("|---|" + "---|" * len(_adv_positions(report)))
    for name, pr in report["presets"].items():
        adv = pr["advance"]["median_ms_before"]
        L.append(f"| {name} | " + " | ".join(_ms(adv.get(str(p))) for p in _adv_positions(report)) + " |")
    L.append("\n(median of the last window of steps before each position while advancing the state; the timed "
             "groups above use the states reached here.)\n")

    L.append("### Memory\n")
    ctxs = report["config"]["contexts"]
    L.append("| preset | weights read per step (MB) | LRAM state / robot (MB) | "
             + " | ".join(f"DT KV cache / robot @{c} (MB)" for c in ctxs) + " | peak RSS after (MiB) |")
    L.append("|---|---|---|" + "---|" * len(ctxs) + "---|")
    for name, pr in report["presets"].items():
        kv = pr["dt"]["kv_cache_bytes_per_robot"]
        L.append(f"| {name} | {_mb(pr['lram']['graph_weight_bytes'])} | {_mb(pr['lram']['state_bytes_per_robot'])} | "
                 + " | ".join(_mb(kv[str(c)]) for c in ctxs) + f" | {pr['peak_rss_bytes_after'] / 2**20:.0f} |")
    L.append("\n| preset | batch | LRAM state, all robots (MB) | bytes of the floor (MB) | "
             + " | ".join(f"DT KV cache @{c} (MB)" for c in ctxs) + " |")
    L.append("|---|---|---|---|" + "---|" * len(ctxs))
    for name, pr in report["presets"].items():
        for B, br in pr["batches"].items():
            L.append(f"| {name} | {B} | {_mb(br['state_bytes'])} | {_mb(br['floor_bytes'])} | "
                     + " | ".join(_mb(br["kv_cache_bytes"][str(c)]) for c in ctxs) + " |")
    L.append("\nLRAM parameters / DT parameters: " + ", ".join(
        f"{n}: {pr['lram']['parameters'] / 1e6:.2f}M / {pr['dt']['parameters'] / 1e6:.2f}M"
        for n, pr in report["presets"].items()) + ". Peak RSS is the process's high-water mark (ru_maxrss), "
        "so it includes everything measured before it.")
    L.append("\n### All ratios\n")
    L.append("| ratio | value | better |")
    L.append("|---|---|---|")
    for k, v in report["ratios"].items():
        L.append(f"| {k} | {v:.3f} | {report['directions'][k]} |")
    return "\n".join(L) + "\n"


def _precision_table(report: dict) -> list:
    """Every precision next to every flavour, timed in the same rounds (bench/precision_rows.py)."""
    if not any(pr["lram"].get("precision_rows") for pr in report["presets"].values()):
        return []
    L = ["### Precisions side by side (same interleaved rounds as the FP32 rows)\n",
         "| preset | batch | flavour | precision | weights (MB) | nodes (exported / after ORT) | step (ms) | "
         "floor (ms) | / FP32 of that flavour | / floor |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, pr in report["presets"].items():
        rows = pr["lram"].get("precision_rows") or {}
        nodes = pr["lram"].get("nodes", {})
        for B, br in pr["batches"].items():
            p, r = br["paths"], br["ratios"]
            fp32 = (("standard", "ort_chunk", "export_over_floor"), ("ort", "ort_fused", "fused_over_floor"),
                    ("native", "ort_native", "native_over_floor"))
            for flavour, cand, over_floor in fp32:
                n = nodes.get(flavour)
                L.append(f"| {name} | {B} | {flavour} | fp32 | {_mb(pr['lram']['graph_weight_bytes'])} | "
                         f"{(str(n['exported']) + ' / ' + str(n['optimised'])) if n else '-'} | {_ms(_p50(p, cand))} | "
                         f"{_ms(br['floor_ms'])} | 1 | {_rx(r, over_floor)} |")
                for row, info in rows.items():
                    if info["flavour"] != flavour:
                        continue
                    L.append(f"| {name} | {B} | {flavour} | {info['precision']} | {_mb(info['graph_weight_bytes'])} | "
                             f"{info['nodes']['exported']} / {info['nodes']['optimised']} | {_ms(_p50(p, row))} | "
                             f"{_ms(br.get('precision_floor_ms', {}).get(row))} | "
                             f"{_rx(r, f'precision_over_fp32@{row}')} | {_rx(r, f'precision_over_floor@{row}')} |")
    L.append("\nEach row's floor is its own: (its weight bytes + 2 x batch x FP32 state bytes) / the bandwidth of "
             "the same rounds. / FP32 is paired per round against the FP32 graph of the same flavour. fp16 and int8 "
             "(Q/DQ) take the standard flavour only; the int8 Q/DQ row is calibrated on synthetic feeds (the graph "
             "stepped on random observations): right for latency, not for accuracy (`lram calibrate` gates that).\n")
    return L


def _robots_sections(report: dict) -> list:
    from .robots import table

    L = []
    for name, pr in report["presets"].items():
        sec = pr.get("robots")
        if sec:
            L.append(f"### Robots served at {sec['hz']:g} Hz per core ({name}, one process, {sec['threads']} "
                     "thread(s))\n")
            L.append("p50 / p99 of the runtime's `Policy.step` with N robots (one state slot each, one batched call "
                     f"per tick), {sec['steps']} timed steps per count after {sec['warmup']} untimed, the graphs "
                     f"interleaved in blocks of {sec['block']} steps (the step after each switch untimed); a count fits when its p99 <= "
                     f"{sec['period_ms']:.0f} ms.\n")
            L.append(table(sec) + "\n")
    if not L and report.get("mode") == "quick":
        L.append("(The quick mode skips the robots-at-50-Hz section: its figures are absolute, so no ratio gate "
                 "can use them; `lram bench` without --quick runs it for 16M.)\n")
    return L


def _rx(ratios: dict, name: str) -> str:
    v = ratios.get(name)
    return "-" if v is None else f"{v:.2f}x"


def _adv_positions(report) -> list:
    return list(report["config"]["positions"])


# ---- plots -------------------------------------------------------------------------------------------------
def plots(report: dict, out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    presets = list(report["presets"])
    batches = sorted({B for pr in report["presets"].values() for B in pr["batches"]}, key=int)

    # latency vs context: DT vs LRAM, one panel per preset x batch
    fig, axes = plt.subplots(len(presets), len(batches), figsize=(5.5 * len(batches), 3.8 * len(presets)),
                             squeeze=False)
    for i, name in enumerate(presets):
        for j, B in enumerate(batches):
            ax = axes[i][j]
            br = report["presets"][name]["batches"].get(B)
            if br is None:
                ax.axis("off")
                continue
            samples = br["samples_ms"]
            for prefix, label, style in (("dt@", "Decision Transformer (KV cache, PyTorch)", "o-"),
                                         ("lram@", "LRAM recurrent step (ONNX Runtime)", "s-")):
                xs = sorted(int(k.split("@")[1]) for k in samples if k.startswith(prefix))
                if not xs:
                    continue
                q = np.array([np.percentile(samples[f"{prefix}{x}"], [25, 50, 75]) for x in xs])
                ax.errorbar(xs, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], fmt=style, capsize=3,
                            label=label)
            ax.set_xscale("log")
            ticks = sorted(int(k.split("@")[1]) for k in samples if "@" in k)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_ylim(bottom=0)
            ax.set_xlabel("context / episode position (timesteps, 3 tokens each)")
            ax.set_ylabel("ms per environment step (median, IQR)")
            ax.set_title(f"{name}, batch {B}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Latency vs context length, one run, one CPU thread")
    fig.tight_layout()
    p = out_dir / "latency_vs_context.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)

    # histograms per preset x batch
    for name in presets:
        for B, br in report["presets"][name]["batches"].items():
            samples = br["samples_ms"]
            ctx_max = max((int(k.split("@")[1]) for k in samples if k.startswith("dt@")), default=None)
            pos_max = max((int(k.split("@")[1]) for k in samples if k.startswith("lram@")), default=None)
            names = [n for n in ("ort_chunk", "ort_sequential", "torch_eager") if n in samples]
            names += [n for n in (f"dt@{ctx_max}", f"lram@{pos_max}") if n in samples]
            fig, ax = plt.subplots(figsize=(7, 4))
            allv = np.concatenate([np.asarray(samples[n]) for n in names])
            bins = np.geomspace(max(allv.min(), 1e-3), allv.max(), 60)
            for n in names:
                ax.hist(samples[n], bins=bins, alpha=0.5, label=f"{n} (median {np.median(samples[n]):.2f} ms)")
            ax.set_xscale("log")
            ax.set_xlabel("ms per environment step")
            ax.set_ylabel("calls")
            ax.set_title(f"{name}, batch {B}: latency histograms (one run, interleaved)")
            ax.legend(fontsize=7)
            fig.tight_layout()
            p = out_dir / f"latency_hist_{name}_b{B}.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            written.append(p)

    # the advance: per-step latency along the episode
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in presets:
        adv = report["presets"][name]["advance"]
        ax.plot(adv["position"], adv["median_ms"], label=f"{name} (median over {adv['window']} steps)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("episode position (environment steps)")
    ax.set_ylabel("ms per step, batch 1")
    ax.set_title("Exported LRAM step latency along one episode")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "latency_along_episode.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    return written


def write_outputs(report: dict, out_dir: str | Path, with_plots: bool = True) -> dict:
    """report.json, report.md and the PNGs into ``out_dir``; returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=1, sort_keys=False))
    paths["markdown"].write_text(markdown(report))
    if with_plots:
        paths["plots"] = plots(report, out_dir)
    return paths
