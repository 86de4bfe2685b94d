"""Side-by-side latency of one environment step, measured interleaved in one process.

What runs (per preset, per batch size):
- group "paths": the exported chunk graph on ONNX Runtime CPU, standard flavour (``ort_chunk``; only ai.onnx ops)
  and ort flavour (``ort_fused``; the mLSTM memory in ONNX Runtime's fused LinearAttention), the naive sequential export
  (``ort_sequential``), PyTorch eager step mode as the reference code runs it (``torch_eager``: the xlstm
  package's step() three times per environment step), and a bandwidth probe (``gemv``: one-thread GEMV over
  256 MB) from which the memory floor of that same round is computed;
- group "paths" also runs the native flavour (``ort_native``; compiled xLSTM layers between ONNX Runtime segments);
- group "context": the recurrent LRAM on ORT (the native flavour, the fastest) at episode positions P (``lram@P``; the state was reached by
  stepping the exported graph from an episode start at batch 1, then copied to every robot of the batch) and
  the Decision-Transformer baseline with its KV cache filled to C timesteps (``dt@C``; filled by one parallel
  prefill at batch 1, copied to the batch; every timed step appends r, s, R in one call and is then rewound so
  that the context stays C), both in PyTorch eager (``dt@C``) and exported to ONNX Runtime (``dt_ort@C``, the
  baseline: same runtime and threads as the LRAM; ``transformer_onnx``).
- in group "paths" also every reduced precision next to every flavour it applies to (``precision_rows``: fp16 and
  int8 Q/DQ of the standard graph, int8 / int4 MatMulNBits of every ONNX Runtime flavour, the bf16 state of the
  native one), paired with their flavour's FP32 row; in group "context" the bf16-state LRAM beside
  (``lram_bf16@C``);
- per preset in ``robots``, after its batches: robots served at 50 Hz by one process on one thread (``robots``:
  p99 of the runtime's ``Policy.step`` with N robots under the period; native, ort and standard flavour).

Timing discipline (2 shared cores, other users): one thread everywhere; candidates of a group take turns in
rounds (a fresh random order each round), ``calls_per_round`` consecutive calls each; a candidate's round value
is the median of its calls; ratios are the median over rounds of the per-round ratio (paired, so load that
drifts between rounds cancels). Only ratios are compared across runs (``bench_gate``); absolute times are
reported for reading, never asserted.

Test-only hook: ``inject_slowdown=F`` makes every ORT call of the LRAM graphs take F times as long (the call
is followed by a busy wait of (F - 1) x its own duration), to show that the gate catches a slower graph.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from lram.runtime.latency import summarize

from .memory import BandwidthProbe, floor_seconds, onnx_weight_bytes, peak_rss_bytes
from .precision_rows import PRECISIONS, rows_for
from .robots import DEFAULT_COUNTS as ROBOT_COUNTS

SCHEMA = "lram-bench/1"
BENCH_TASK = dict(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4,
                  action_low=(-1.0,) * 4, action_high=(1.0,) * 4, reward_scale=200.0, name="metaworld-like")
# ratio name -> which way is better; keys of the report's "ratios" are "<preset>.b<batch>.<name>"
DIRECTIONS = {
    "export_over_eager": "lower",
    "export_over_sequential": "lower",
    "export_over_floor": "lower",
    "fused_over_floor": "lower",
    "fused_over_export": "lower",  # ort flavour / standard flavour
    "native_over_floor": "lower",
    "native_over_fused": "lower",  # native flavour / ort flavour
    "native_over_export": "lower",  # native flavour / standard flavour
    "sequential_over_eager": "lower",
    "dt_over_lram": "higher",  # "dt_over_lram@C": the Decision Transformer in PyTorch eager
    "dt_ort_over_lram": "higher",  # the Decision Transformer exported to ONNX Runtime: the baseline
    "position": "lower",  # "position_P_over_P0": latency at position P / at the first position (flatness)
    "precision_over_fp32": "lower",  # "precision_over_fp32@row": bench/precision_rows.py
    "precision_over_floor": "lower",
}


def direction(ratio_key: str) -> str:
    name = ratio_key.split(".", 2)[-1]
    for prefix, d in DIRECTIONS.items():
        if name.startswith(prefix):
            return d
    raise KeyError(f"no direction known for ratio {ratio_key!r}")


@dataclass
class BenchConfig:
    presets: tuple = ("tiny", "16M")
    batches: tuple = (1, 16)
    positions: tuple = (50, 200, 800, 1600, 10000)  # LRAM episode positions (environment steps)
    contexts: tuple = (50, 200, 800, 1600)  # DT context lengths (timesteps, x3 tokens)
    group_seconds: float = 20.0  # target wall time of one interleaved group
    min_rounds: int = 8
    max_rounds: int = 400
    calls_per_round: int = 3
    sequential: bool = True  # also time the naive sequential export
    eager: bool = True
    perturb: float = 0.05  # random weights: latency does not depend on training
    seed: int = 0
    inject_slowdown: float = 1.0  # test-only (see the module doc)
    mode: str = "custom"
    workdir: str | None = None  # where the exported graphs go (a temporary folder when None)
    precisions: tuple = PRECISIONS  # reduced-precision rows beside FP32 in the paths group (bench/precision_rows.py)
    robots: tuple = ("16M",)  # presets whose robots-at-50-Hz section runs (bench/robots.py)
    robot_counts: tuple = ROBOT_COUNTS
    robot_hz: float = 50.0

    def __post_init__(self):
        self.presets = tuple(self.presets)
        self.batches = tuple(int(b) for b in self.batches)
        self.contexts = tuple(sorted(int(c) for c in self.contexts))
        # the LRAM is measured at every DT context too, so that DT / LRAM pairs exist
        self.positions = tuple(sorted({int(p) for p in self.positions} | set(self.contexts)))
        if not self.presets or not self.batches or not self.positions:
            raise ValueError("presets, batches and positions must not be empty")
        if min(self.positions) < 1 or min(self.batches) < 1:
            raise ValueError("positions and batches must be positive")
        if self.inject_slowdown < 1.0:
            raise ValueError("inject_slowdown must be >= 1")
        self.precisions, self.robots = tuple(self.precisions), tuple(self.robots)
        self.robot_counts = tuple(int(n) for n in self.robot_counts)
        rows_for(self.precisions)  # names an unknown precision


def quick_config(**overrides) -> BenchConfig:
    """What CI runs (< 2 minutes): tiny + 16M, batch 1, two contexts, every precision row; no robots section
    (its figures are absolute, so no gate can use them, and at 16M it takes 1.5-2 minutes)."""
    return replace(BenchConfig(batches=(1,), positions=(50, 800), contexts=(50, 800), group_seconds=5.0,
                               min_rounds=8, mode="quick", robots=()), **overrides)


def full_config(**overrides) -> BenchConfig:
    """Release check (about 10 minutes on the 2-core CI machine)."""
    return replace(BenchConfig(group_seconds=25.0, mode="full"), **overrides)


# ---- steppers ----------------------------------------------------------------------------------------------
def slowed(run: Callable, factor: float) -> Callable:
    """Test-only: ``run`` followed by a busy wait of (factor - 1) x the call's own duration."""
    if factor == 1.0:
        return run

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = run(*args, **kwargs)
        until = t0 + factor * (time.perf_counter() - t0)
        while time.perf_counter() < until:
            pass
        return out

    return wrapper


class OrtStepper:
    """The preset bench's graph stepper: ``artifact.Stepper`` (the graph opened as lram.verify's GraphRunner,
    ONNX Runtime CPU, one thread) carrying its state from call to call, plus a timed walk along an episode.
    Steppers of one graph may share an ``Artifact`` (one session, one copy of the weights)."""

    def __init__(self, path: str | Path, batch: int, slowdown: float = 1.0, seed: int = 0, art=None):
        from .artifact import Artifact, Stepper

        self._owns = art is None
        self.art = art if art is not None else Artifact(path, "ort-cpu", threads=1)
        self.manifest, self.batch = self.art.manifest, batch
        self._stepper = Stepper(self.art, batch, seed=seed, slowdown=slowdown)
        self.feeds, self.obs_pool = self._stepper.feeds, self._stepper.obs_pool

    def step(self, carry: bool = True):
        return self._stepper.step(carry)

    def state(self) -> dict:
        return {s.name: self.feeds[s.input].copy() for s in self.manifest.state}

    def set_state(self, state: dict) -> None:
        """``state`` with batch 1 (or this batch): row 0 is copied to every robot."""
        self._stepper.set_state(state)

    def walk(self, steps: int, snapshot_at=(), progress: Callable | None = None):
        """Run ``steps`` environment steps from an episode start; returns (per-step seconds, {position: state})."""
        times = np.empty(steps)
        snaps = {}
        marks = set(snapshot_at)
        for k in range(steps):
            self.feeds["first"][:] = k == 0
            self.feeds["obs"] = self.obs_pool[k % len(self.obs_pool)]
            self.feeds["rtg"][:] = 400.0 - 0.01 * k
            t0 = time.perf_counter()
            self.step()
            times[k] = time.perf_counter() - t0
            if k + 1 in marks:
                snaps[k + 1] = self.state()
            if progress and (k + 1) % 2000 == 0:
                progress(f"  advanced {k + 1}/{steps} steps")
        self.feeds["first"][:] = False
        return times, snaps

    def close(self):
        if self._owns:
            self.art.close()


class EagerStepper:
    """The PyTorch model's own step(): the xlstm package's step() three times per environment step."""

    def __init__(self, model, batch: int, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.model, self.torch = model, torch
        self.obs = torch.randn((batch, model.task.obs_shape[0]), generator=g)
        self.rtg = torch.full((batch,), 400.0)
        self.rew = torch.ones(batch)
        self.first = torch.zeros(batch, dtype=torch.bool)
        self.state = model.init_state(batch)
        _, self.state = model.step(self.obs, self.rtg, self.rew, torch.ones(batch, dtype=torch.bool), self.state)

    def step(self):
        _, self.state = self.model.step(self.obs, self.rtg, self.rew, self.first, self.state)


class DTStepper:
    """The DT baseline with its cache at ``context`` timesteps; each call appends one step and rewinds."""

    def __init__(self, dt, batch: int, context: int, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        D = dt.task.obs_shape[0]
        cache = dt.init_cache(1, window_timesteps=context)
        dt(torch.randn((1, context, D), generator=g), torch.full((1, context), 400.0), torch.ones(1, context),
           cache=cache)
        self.cache = cache.tiled(batch) if batch > 1 else cache
        self.dt, self.tokens = dt, self.cache.tokens
        self.obs = torch.randn((batch, D), generator=g)
        self.rtg = torch.full((batch,), 400.0)
        self.rew = torch.ones(batch)

    def step(self):
        self.dt.step(self.obs, self.rtg, self.rew, False, self.cache)
        self.cache.tokens = self.tokens  # stay at this context

    def nbytes(self) -> int:
        return self.cache.nbytes()


# ---- the interleaved timing loop ---------------------------------------------------------------------------
def interleave(cands: dict, cfg: BenchConfig, progress: Callable | None = None, label: str = "") -> dict:
    """{name: callable} -> {name: seconds [rounds, calls_per_round]}."""
    names = list(cands)
    for n in names:  # warm-up
        cands[n]()
        cands[n]()
    t0 = time.perf_counter()
    for n in names:
        cands[n]()
    est = max(time.perf_counter() - t0, 1e-6) * cfg.calls_per_round
    rounds = int(min(cfg.max_rounds, max(cfg.min_rounds, cfg.group_seconds // est)))
    if progress:
        progress(f"  {label}: {len(names)} candidates x {rounds} rounds x {cfg.calls_per_round} calls "
                 f"(~{rounds * est:.0f} s)")
    samples = {n: np.empty((rounds, cfg.calls_per_round)) for n in names}
    clock = time.perf_counter
    # A fresh order every round: with a fixed cyclic order one candidate always ran right after the same
    # neighbour (the LRAM at the first position right after the Transformer at 1600 timesteps, whose 79 MB
    # cache evicted the LRAM's weights: measured 4.17 vs 3.35 ms for the same graph one position later).
    order = np.random.default_rng(cfg.seed)
    for r in range(rounds):
        for n in (names[i] for i in order.permutation(len(names))):
            f, buf = cands[n], samples[n][r]
            for c in range(cfg.calls_per_round):
                t = clock()
                f()
                buf[c] = clock() - t
    return samples


def _round_values(x: np.ndarray) -> np.ndarray:
    return np.median(x, axis=1)


def paired_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """Median over rounds of (a's round median / b's round median)."""
    return float(np.median(_round_values(a) / _round_values(b)))


def _summary(x: np.ndarray) -> dict:
    return summarize(x.ravel())


# ---- the whole run -----------------------------------------------------------------------------------------
def make_models(name: str, cfg: BenchConfig):
    import torch

    from lram.model.config import TaskSpec, preset
    from lram.bench.transformer import make_decision_transformer
    from lram.model.lram import LRAM

    task = TaskSpec(**BENCH_TASK)
    torch.manual_seed(cfg.seed)
    lram = LRAM(preset(name, encoders=("state",)), task).eval()
    g = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():
        for p in lram.parameters():
            p.add_(cfg.perturb * torch.randn(p.shape, generator=g))
    dt = make_decision_transformer(name, task, window_timesteps=max(cfg.contexts), seed=cfg.seed,
                                   perturb=cfg.perturb)
    return lram, dt


def machine_info() -> dict:
    """The machine record every bench writes (bench/machine.py) plus what the preset bench also depends on."""
    import torch

    from .machine import machine_info as base

    info = base()
    info.update(torch=torch.__version__, threads={"torch": torch.get_num_threads(), "ort_intra_op": 1},
                malloc_env={k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
                loadavg_start=info.pop("loadavg", []))
    return info


def run_bench(cfg: BenchConfig, progress: Callable | None = print, command: str = "") -> dict:
    """Run everything in ``cfg``; returns the JSON-able report (see ``bench_report`` for tables and plots)."""
    import torch

    from lram.bench.transformer_onnx import export_dt_onnx
    from lram.export.onnx_export import export_onnx
    from lram.bench.transformer import kv_cache_bytes

    torch.set_num_threads(1)
    log = progress or (lambda *_: None)
    started = time.time()
    report = {"schema": SCHEMA, "mode": cfg.mode, "command": command, "config": asdict(cfg),
              "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "presets": {},
              "ratios": {}, "directions": {}}
    if cfg.inject_slowdown != 1.0:
        report["inject_slowdown"] = cfg.inject_slowdown
    probe = BandwidthProbe()
    bw_all = []
    tmp = tempfile.TemporaryDirectory(prefix="lram-bench-") if cfg.workdir is None else None
    workdir = Path(cfg.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for name in cfg.presets:
            log(f"[{name}] building models and exporting")
            lram, dt = make_models(name, cfg)
            chunk_path = export_onnx(lram, workdir / f"{name}.onnx")
            fused_path = export_onnx(lram, workdir / f"{name}_ort.onnx", flavour="ort")
            native_path = export_onnx(lram, workdir / f"{name}_native.onnx", flavour="native")
            dt_path = export_dt_onnx(dt, workdir / f"{name}_dt.onnx")
            seq_path = export_onnx(lram, workdir / f"{name}_sequential.onnx", mode="sequential") if cfg.sequential else None
            stepper1 = OrtStepper(native_path, 1, cfg.inject_slowdown, cfg.seed)
            state_bytes = stepper1.manifest.state_bytes_per_robot
            weight_bytes = onnx_weight_bytes(chunk_path)
            pr = report["presets"][name] = {
                "lram": {"parameters": lram.parameter_count(), "blocks": lram.config.num_blocks,
                         "dim": lram.config.embedding_dim, "block_types": lram.config.block_types,
                         "graph_weight_bytes": weight_bytes, "state_bytes_per_robot": state_bytes,
                         "nodes": {"standard": node_counts(chunk_path, workdir), "ort": node_counts(fused_path, workdir),
                                   "native": node_counts(native_path, workdir)},
                         # the LRAM rows of the context group (against the Transformer): the fastest flavour
                         "context_flavour": "native"},
                "dt": {"parameters": dt.parameter_count(), "layers": dt.config.num_layers,
                       "dim": dt.config.embedding_dim, "heads": dt.config.num_heads,
                       "kv_cache_bytes_per_robot": {str(c): kv_cache_bytes(dt.config, c) for c in cfg.contexts}},
                "batches": {},
            }
            steps = max(cfg.positions)
            log(f"[{name}] advancing the exported graph {steps} steps at batch 1")
            times, snaps = stepper1.walk(steps, cfg.positions, log)
            finite = all(np.isfinite(v).all() for s in snaps.values() for v in s.values())
            pr["advance"] = _advance_curve(times, cfg.positions)
            pr["advance"]["state_finite"] = bool(finite)
            stepper1.close()
            rows = _precision_graphs(cfg, chunk_path, fused_path, native_path, workdir, pr, log)
            for B in cfg.batches:
                pr["batches"][str(B)] = _bench_batch(name, B, cfg, lram, dt, dt_path, chunk_path, fused_path,
                                                      native_path, seq_path, snaps,
                                                      weight_bytes, state_bytes, probe, bw_all, report, log, rows)
            if name in cfg.robots:
                from .robots import robots_at_hz

                log(f"[{name}] robots at {cfg.robot_hz:g} Hz (Policy.step, one process, one thread)")
                pr["robots"] = robots_at_hz({"native": native_path, "ort": fused_path, "standard": chunk_path},
                                            cfg.robot_hz, cfg.robot_counts, progress=log)
            pr["peak_rss_bytes_after"] = peak_rss_bytes()
            del lram, dt, snaps
    finally:
        probe.close()
        if tmp is not None:
            tmp.cleanup()
    report["bandwidth_GBps"] = float(np.median(bw_all)) / 1e9 if bw_all else None
    report["peak_rss_bytes"] = peak_rss_bytes()
    report["elapsed_s"] = time.time() - started
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    return report


def node_counts(path: Path, workdir: Path) -> dict:
    """Nodes in the exported graph and after ONNX Runtime's full optimisation (what runs: each node costs ~µs).
    A native-flavour graph counts its ONNX Runtime segments after optimisation plus its compiled nodes."""
    import onnx

    from lram.runtime.graph_segments import split
    from lram.runtime.native_xlstm import DOMAIN

    model = onnx.load(str(path), load_external_data=False)
    stages = split(model, DOMAIN) if any(n.domain == DOMAIN for n in model.graph.node) else None
    if stages is None:
        optimised = _optimised_nodes(str(path), workdir / f"{Path(path).stem}.optimised.onnx")
    else:
        optimised = sum(len(st.natives) for st in stages) + sum(
            _optimised_nodes(st.segment.model.SerializeToString(), workdir / f"{Path(path).stem}.seg{i}.onnx")
            for i, st in enumerate(stages) if st.segment is not None)
    return {"exported": len(model.graph.node), "optimised": optimised}


def _optimised_nodes(src, optimised: Path) -> int:
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3  # the "hardware specific optimizations" warning: this file is only counted
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(optimised)
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    n = len(onnx.load(str(optimised), load_external_data=False).graph.node)
    optimised.unlink()
    return n


def _advance_curve(times: np.ndarray, positions) -> dict:
    """Per-step latency while stepping to the last position: medians over windows (the flat-latency curve)."""
    n = len(times)
    win = max(10, n // 100)
    pos, med = [], []
    for a in range(0, n, win):
        pos.append(a + win // 2)
        med.append(float(np.median(times[a:a + win]) * 1e3))
    at = {str(p): float(np.median(times[max(0, p - win):p]) * 1e3) for p in positions}
    return {"window": win, "position": pos, "median_ms": med, "median_ms_before": at, "total_s": float(times.sum())}


def _precision_graphs(cfg, chunk_path, fused_path, native_path, workdir, pr, log) -> dict:
    """{row: (path, weight bytes, state bytes per robot)} of the reduced-precision rows (bench/precision_rows.py);
    their node counts and sizes go into the preset's record ``pr``."""
    from lram.runtime.model_files import read_manifest

    from .precision_rows import ROWS, write_rows

    rows = rows_for(cfg.precisions)
    if not rows:
        return {}
    paths = write_rows(rows, {"standard": chunk_path, "ort": fused_path, "native": native_path}, workdir, log)
    out, info = {}, {}
    pr["lram"]["precision_rows"] = info
    for row, path in paths.items():
        out[row] = (path, onnx_weight_bytes(path), read_manifest(path).state_bytes_per_robot)
        info[row] = {"flavour": ROWS[row][0], "precision": ROWS[row][1], "graph_weight_bytes": out[row][1],
                     "state_bytes_per_robot": out[row][2], "nodes": node_counts(path, workdir)}
    return out


def _bench_batch(name, B, cfg, lram, dt, dt_path, chunk_path, fused_path, native_path, seq_path, snaps,
                 weight_bytes, state_bytes, probe, bw_all, report, log, rows=None) -> dict:
    from lram.bench.transformer import kv_cache_bytes
    from lram.bench.transformer_onnx import OrtDTStepper

    key = f"{name}.b{B}"
    out = {"state_bytes": B * state_bytes,
           "kv_cache_bytes": {str(c): kv_cache_bytes(dt.config, c, B) for c in cfg.contexts}}

    from lram.runtime.backend_ort import OrtBackend

    from .artifact import Artifact

    # -- group "paths": each flavour's exported chunk graph vs sequential export vs eager, and the bandwidth probe
    # one session (one copy of the weights) per graph; the native one serves the context group too
    sessions = {"ort_chunk": Artifact(chunk_path, "ort-cpu", threads=1),
                "ort_fused": Artifact(fused_path, "ort-cpu", threads=1),
                "ort_native": Artifact(native_path, "ort-cpu", threads=1)}
    cands, steppers = {"gemv": probe}, []
    for cand, art in sessions.items():
        st = OrtStepper(art.path, B, cfg.inject_slowdown, cfg.seed, art=art)
        st.set_state(snaps[min(cfg.positions)])
        cands[cand] = st.step
        steppers.append(st)
    native_session = sessions.pop("ort_native")
    if seq_path is not None:
        seq = OrtStepper(seq_path, B, cfg.inject_slowdown, cfg.seed)
        seq.set_state(snaps[min(cfg.positions)])
        cands["ort_sequential"] = seq.step
        steppers.append(seq)
    if cfg.eager:
        cands["torch_eager"] = EagerStepper(lram, B, cfg.seed).step
    for row, (path, _, _) in (rows or {}).items():  # reduced precisions, in the same rounds as their FP32 rows
        st = OrtStepper(path, B, cfg.inject_slowdown, cfg.seed)
        st.set_state(snaps[min(cfg.positions)])
        cands[row] = st.step
        steppers.append(st)
    paths = interleave(cands, cfg, log, f"[{key}] paths")
    for s in [*steppers, *sessions.values()]:
        s.close()
    del cands, steppers
    bw_round = probe.bytes / _round_values(paths["gemv"])
    bw_all.extend(bw_round.tolist())
    floor_round = floor_seconds(weight_bytes, state_bytes, B, 1.0) / bw_round
    out["bandwidth_GBps"] = float(np.median(bw_round)) / 1e9
    out["floor_ms"] = float(np.median(floor_round)) * 1e3
    out["floor_bytes"] = int(weight_bytes + 2 * B * state_bytes)
    ratios = {"export_over_floor": float(np.median(_round_values(paths["ort_chunk"]) / floor_round)),
              "fused_over_floor": float(np.median(_round_values(paths["ort_fused"]) / floor_round)),
              "fused_over_export": paired_ratio(paths["ort_fused"], paths["ort_chunk"]),
              "native_over_floor": float(np.median(_round_values(paths["ort_native"]) / floor_round)),
              "native_over_fused": paired_ratio(paths["ort_native"], paths["ort_fused"]),
              "native_over_export": paired_ratio(paths["ort_native"], paths["ort_chunk"])}
    if "torch_eager" in paths:
        ratios["export_over_eager"] = paired_ratio(paths["ort_chunk"], paths["torch_eager"])
    if "ort_sequential" in paths:
        ratios["export_over_sequential"] = paired_ratio(paths["ort_chunk"], paths["ort_sequential"])
        if "torch_eager" in paths:
            ratios["sequential_over_eager"] = paired_ratio(paths["ort_sequential"], paths["torch_eager"])
    if rows:
        from .precision_rows import ratios as precision_ratios

        floors = {row: floor_seconds(wb, sb, B, 1.0) / bw_round for row, (_, wb, sb) in rows.items()}
        out["precision_floor_ms"] = {row: float(np.median(f)) * 1e3 for row, f in floors.items()}
        ratios.update(precision_ratios(paths, floors, rows))

    # -- group "context": LRAM (the native flavour, the fastest) at episode positions vs DT at context lengths
    cands, keep = {}, []
    for p in cfg.positions:
        st = OrtStepper(native_path, B, cfg.inject_slowdown, cfg.seed, art=native_session)
        st.set_state(snaps[p])
        keep.append(st)
        cands[f"lram@{p}"] = (lambda s=st: s.step(carry=False))
    bf16 = (rows or {}).get("native_bf16-state")
    if bf16 is not None:  # the opt-in bf16 state, reported beside (its own crossover with the Transformer)
        bf16_session = Artifact(bf16[0], "ort-cpu", threads=1)
        for c in cfg.contexts:
            st = OrtStepper(bf16[0], B, cfg.inject_slowdown, cfg.seed, art=bf16_session)
            st.set_state(snaps[c])
            keep.append(st)
            cands[f"lram_bf16@{c}"] = (lambda s=st: s.step(carry=False))
    dt_bytes = {}
    dt_session = OrtBackend(dt_path, threads=1)
    for c in cfg.contexts:
        d = DTStepper(dt, B, c, cfg.seed)
        dt_bytes[str(c)] = d.nbytes()
        cands[f"dt@{c}"] = d.step
        od = OrtDTStepper(dt_path, d.cache, B, backend=dt_session, seed=cfg.seed)
        keep.append(od)
        cands[f"dt_ort@{c}"] = (lambda s=od: s.step(advance=False))
    out["kv_cache_allocated_bytes"] = dt_bytes
    ctx = interleave(cands, cfg, log, f"[{key}] context")
    del cands, keep
    native_session.close()
    dt_session.close()
    if bf16 is not None:
        bf16_session.close()
    p0 = min(cfg.positions)
    for p in cfg.positions:
        if p != p0:
            ratios[f"position_{p}_over_{p0}"] = paired_ratio(ctx[f"lram@{p}"], ctx[f"lram@{p0}"])
    for c in cfg.contexts:
        ratios[f"dt_ort_over_lram@{c}"] = paired_ratio(ctx[f"dt_ort@{c}"], ctx[f"lram@{c}"])
        ratios[f"dt_over_lram@{c}"] = paired_ratio(ctx[f"dt@{c}"], ctx[f"lram@{c}"])
        if f"lram_bf16@{c}" in ctx:
            ratios[f"dt_ort_over_lram_bf16@{c}"] = paired_ratio(ctx[f"dt_ort@{c}"], ctx[f"lram_bf16@{c}"])

    out["paths"] = {n: _summary(v) for n, v in paths.items()}
    out["context"] = {n: _summary(v) for n, v in ctx.items()}
    out["samples_ms"] = {n: np.round(v.ravel() * 1e3, 4).tolist() for n, v in {**paths, **ctx}.items()}
    out["ratios"] = ratios
    for r, v in ratios.items():
        report["ratios"][f"{key}.{r}"] = v
        report["directions"][f"{key}.{r}"] = direction(f"{key}.{r}")
    log(f"[{key}] " + ", ".join(f"{r}={v:.3g}" for r, v in ratios.items()))
    return out
