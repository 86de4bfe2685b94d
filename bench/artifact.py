"""Latency of the user's own artifact (an exported graph of any flavour / precision, or a compiled engine) on
one of the runtime's backends: what ``lram bench ARTIFACT`` and the pytest plugin measure.

What one measurement is:
- the state is first advanced to each episode position P by stepping the artifact itself from an episode
  start at batch 1 (an exported step graph has no faster way to reach step P: there is no parallel prefill
  in it), then copied to every robot of a batch;
- each step is the call the runtime's Policy makes: every input and the state fed, every output returned;
- per batch size B, one group of interleaved rounds: every (B, P) stepper, the reference artifact's
  steppers (``--against``) and the bandwidth probe of ``bench/memory.py`` take turns (the order rotates each
  round), a stepper ``calls`` consecutive steps per round (sized so that a round's steps take about as long as
  one probe call), the probe one call; the timed steps do not carry their state, so the state stays at P;
- the figures: p50 / p95 / p99 / max / std per step over every timed call, jitter (p99 - p50), the memory
  floor (graph weight bytes + 2 x B x state bytes, over the bandwidth of the same rounds) and step / floor
  (median over rounds of the paired per-round ratio), artifact / reference (same), and with ``hz`` how many
  robots fit in one period at the stated margin;
- ``runs`` repeats the timed groups (the advance is done once); every figure is then the median over runs,
  and the per-run values are kept so that the gate can derive its tolerance from their spread
  (``bench/artifact_gate.py``).

Test-only hook: ``slowdown=F`` makes every call of the artifact (not of the reference) take F times as long
(``bench.latency.slowed``), to show that a gate catches a slower step.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lram.runtime.latency import summarize

SCHEMA = "lram-bench-artifact/1"
# figures of one (batch, position) cell that are gated as absolute numbers (machine-bound)
ABSOLUTE = ("p50_ms", "p95_ms", "p99_ms")


@dataclass
class ArtifactConfig:
    batches: tuple = (1,)
    positions: tuple = (100,)  # environment steps taken from an episode start before the timed steps
    backend: str = "auto"
    threads: int = 1
    warmup: int = 20  # untimed steps per stepper before its first round (allocation, kernel choice)
    seconds: float = 3.0  # target wall time of one batch's group, per run
    min_rounds: int = 10
    runs: int = 1
    hz: float | None = None
    margin: float = 0.6  # a step fits the period when its p99 <= margin x period
    against: str | None = None  # a reference artifact measured in the same rounds
    floor: bool = True  # measure the bandwidth probe and the memory floor
    seed: int = 0
    slowdown: float = 1.0  # test-only (see the module doc)

    def __post_init__(self):
        self.batches = tuple(sorted({int(b) for b in self.batches}))
        self.positions = tuple(sorted({int(p) for p in self.positions}))
        if not self.batches or min(self.batches) < 1:
            raise ValueError("batch sizes must be positive integers")
        if not self.positions or min(self.positions) < 0:
            raise ValueError("positions must be integers >= 0")
        if self.runs < 1 or self.seconds <= 0 or self.warmup < 0:
            raise ValueError("runs must be >= 1, seconds > 0, warmup >= 0")
        if self.hz is not None and self.hz <= 0:
            raise ValueError("--hz must be positive")
        if not 0 < self.margin <= 1:
            raise ValueError("--margin is a fraction of the period, in (0, 1]")
        if self.slowdown < 1.0:
            raise ValueError("slowdown must be >= 1")


def cell(batch: int, position: int) -> str:
    return f"b{batch}@{position}"


# ---- one artifact, opened on a backend ---------------------------------------------------------------------
class Artifact:
    """The artifact opened as lram.verify's GraphRunner (one backend session shared by its steppers: one copy
    of the weights), with what a latency report says about it."""

    def __init__(self, path: str | Path, backend: str = "auto", threads: int = 1):
        from lram.verify.runners import GraphRunner

        self.runner = GraphRunner(path, backend, threads)
        self.path, self.backend, self.manifest = self.runner.path, self.runner.backend, self.runner.manifest

    def describe(self) -> dict:
        m = self.manifest
        return {"path": str(self.path), "name": self.path.name, "sha256": file_sha256(self.path),
                "backend": self.backend.name, "flavour": m.flavour, "precision": m.precision,
                "parameters": m.model.get("parameters"), "state_bytes_per_robot": m.state_bytes_per_robot,
                **weight_bytes(self.path)}

    def close(self):
        self.backend.close()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weight_bytes(path: Path) -> dict:
    """Bytes of weights one step reads: the graph's initializers; for an engine, those of the .onnx of the same
    name beside it, else the engine file's size (an upper bound: it also holds kernels)."""
    from lram.runtime.backends import ENGINE_SUFFIXES

    from .memory import onnx_weight_bytes

    graph = path
    if path.suffix.lower() in ENGINE_SUFFIXES:
        graph = path.with_suffix(".onnx")
        if not graph.is_file():
            return {"weight_bytes": path.stat().st_size, "weight_bytes_from": "engine file size (upper bound)"}
    try:
        return {"weight_bytes": onnx_weight_bytes(graph), "weight_bytes_from": f"initializers of {graph.name}"}
    except ImportError:
        return {"weight_bytes": graph.stat().st_size, "weight_bytes_from": "graph file size (onnx not installed)"}


class Stepper:
    """``batch`` robots on one artifact, inputs built from its manifest, state carried in numpy."""

    def __init__(self, art: Artifact, batch: int, seed: int = 0, slowdown: float = 1.0):
        from lram.runtime.manifest import BATCH

        from .latency import slowed

        self.art, self.batch = art, batch
        rng = np.random.default_rng(seed)
        obs = next(t for t in art.manifest.inputs if t.name == "obs")
        if obs.shape[0] != BATCH and int(obs.shape[0]) != batch:
            raise ValueError(f"{art.path} was exported for batch {obs.shape[0]} only; measure it with "
                             f"--batch {obs.shape[0]} (or export with --batch dynamic)")
        shape = [batch if d == BATCH else int(d) for d in obs.shape]
        if np.dtype(obs.dtype).kind in "ui":
            pool = rng.integers(0, 256, (16, *shape)).astype(obs.dtype)
        else:
            pool = rng.standard_normal((16, *shape)).astype(obs.dtype)
        self.obs_pool = pool
        self.feeds = {"obs": pool[0], "rtg": np.full((batch, 1), 1.0, np.float32),
                      "prev_reward": np.zeros((batch, 1), np.float32), "first": np.zeros(batch, bool)}
        for s in art.manifest.state:
            self.feeds[s.input] = np.zeros((batch, *s.shape), s.dtype)
        self._run = slowed(art.backend.run, slowdown)

    def step(self, carry: bool = False):
        out = self._run(self.feeds)
        if carry:
            for s in self.art.manifest.state:
                self.feeds[s.input] = out[s.output]
        return out

    def advance(self, positions) -> dict:
        """Step from an episode start to each of ``positions``; {position: state} (batch 1 rows)."""
        snaps = {}
        marks = set(positions)
        if 0 in marks:
            snaps[0] = {s.name: np.zeros((1, *s.shape), s.dtype) for s in self.art.manifest.state}
        for k in range(max(positions)):
            self.feeds["first"][:] = k == 0
            self.feeds["obs"] = self.obs_pool[k % len(self.obs_pool)]
            self.step(carry=True)
            if k + 1 in marks:
                snaps[k + 1] = {s.name: self.feeds[s.input][:1].copy() for s in self.art.manifest.state}
        self.feeds["first"][:] = False
        return snaps

    def set_state(self, state: dict) -> None:
        for s in self.art.manifest.state:
            v = state[s.name]
            # in the graph's own state dtype: a bf16-state graph is fed the FP32 graph's snapshots
            self.feeds[s.input] = np.ascontiguousarray(np.broadcast_to(v[:1], (self.batch, *v.shape[1:])), s.dtype)
        self.feeds["first"][:] = False


# ---- timing ------------------------------------------------------------------------------------------------
def rounds(cands: dict, seconds: float, min_rounds: int) -> dict:
    """{name: (callable, calls per round)} -> {name: seconds [rounds, calls]}; the order rotates each round."""
    names = list(cands)
    t0 = time.perf_counter()
    for n in names:
        f, calls = cands[n]
        for _ in range(calls):
            f()
    per_round = max(time.perf_counter() - t0, 1e-6)
    count = max(min_rounds, int(seconds / per_round))
    samples = {n: np.empty((count, cands[n][1])) for n in names}
    clock = time.perf_counter
    for r in range(count):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            f, calls = cands[n]
            buf = samples[n][r]
            for c in range(calls):
                t = clock()
                f()
                buf[c] = clock() - t
    return samples


def _time_one(f: Callable, n: int = 3) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n


def measure(path: str | Path, cfg: ArtifactConfig, progress: Callable | None = None) -> dict:
    """Measure ``path`` (and ``cfg.against``) as the module doc says; returns the JSON-able report."""
    from .machine import machine_info

    log = progress or (lambda *_: None)
    started = time.time()
    art = Artifact(path, cfg.backend, cfg.threads)
    ref = Artifact(cfg.against, cfg.backend, cfg.threads) if cfg.against else None
    probe = None
    try:
        if ref is not None and ref.manifest.observation != art.manifest.observation:
            raise ValueError(f"--against {cfg.against}: its observation differs from {path}'s; compare two "
                             "artifacts of the same policy")
        report = {"schema": SCHEMA, "config": asdict(cfg), "artifact": art.describe(),
                  "against": ref.describe() if ref else None,
                  "machine": machine_info(art.backend), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if cfg.slowdown != 1.0:
            report["slowdown"] = cfg.slowdown
        if cfg.floor:
            probe = _probe(report)
        snaps = {}
        for name, a in (("artifact", art), ("against", ref)):
            if a is None:
                continue
            log(f"advancing {a.path.name} to position{'s' if len(cfg.positions) > 1 else ''} "
                f"{', '.join(map(str, cfg.positions))} by stepping at batch 1")
            snaps[name] = Stepper(a, 1, cfg.seed).advance(cfg.positions)
            if not all(np.isfinite(v).all() for s in snaps[name].values() for v in s.values()):
                raise ValueError(f"{a.path}: the state is not finite after stepping to {max(cfg.positions)}")
        steppers = {}
        for B in cfg.batches:
            for P in cfg.positions:
                s = Stepper(art, B, cfg.seed, cfg.slowdown)
                s.set_state(snaps["artifact"][P])
                steppers[("artifact", B, P)] = s
                if ref is not None:
                    r = Stepper(ref, B, cfg.seed)
                    r.set_state(snaps["against"][P])
                    steppers[("against", B, P)] = r
        for s in steppers.values():  # warm-up: first calls allocate and pick kernels
            for _ in range(cfg.warmup):
                s.step()
        per_run = []
        for run in range(cfg.runs):
            per_run.append(_one_run(cfg, steppers, probe, report, log, run))
        report["runs"] = per_run
        report["figures"] = _median_over_runs(per_run)
        if cfg.hz:
            report["fit"] = robots_fit(report["figures"], cfg)
        report["elapsed_s"] = time.time() - started
        return report
    finally:
        if probe is not None:
            probe.close()
        art.close()
        if ref is not None:
            ref.close()


def _probe(report):
    try:
        from .memory import BandwidthProbe

        return BandwidthProbe()
    except ImportError as e:  # the bandwidth probe is torch's one-thread GEMV
        report["floor_note"] = f"memory floor not measured: the bandwidth probe needs torch ({e})"
        return None


def _one_run(cfg, steppers, probe, report, log, run) -> dict:
    from .memory import floor_seconds

    W = report["artifact"]["weight_bytes"]
    S = report["artifact"]["state_bytes_per_robot"]
    out = {"cells": {}, "bandwidth_GBps": {}}
    for B in cfg.batches:
        cands = {}
        for (who, b, P), s in steppers.items():
            if b == B:
                cands[(who, P)] = s.step
        step_t = max(_time_one(f) for f in cands.values())
        probe_t = _time_one(probe) if probe is not None else 0.0
        # a round's steps take about one probe call (or 10 ms without the probe): rounds stay short, so load
        # that drifts between rounds reaches every candidate alike
        round_t = probe_t if probe is not None else 0.01
        calls = int(min(200, max(5, round_t / (len(cands) * step_t))))
        timed = {k: (f, calls) for k, f in cands.items()}
        if probe is not None:
            timed["gemv"] = (probe, 1)
        samples = rounds(timed, cfg.seconds, cfg.min_rounds)
        if probe is not None:
            bw = probe.bytes / samples["gemv"][:, 0]
            floor = floor_seconds(W, S, B, 1.0) / bw
            out["bandwidth_GBps"][str(B)] = float(np.median(bw)) / 1e9
        for P in cfg.positions:
            x = samples[("artifact", P)]
            fig = summarize(x.ravel())
            fig["jitter_ms"] = fig["p99_ms"] - fig["p50_ms"]
            fig["rounds"], fig["calls_per_round"] = x.shape
            ratios = {}
            if probe is not None:
                fig["floor_ms"] = float(np.median(floor)) * 1e3
                fig["floor_bytes"] = int(W + 2 * B * S)
                ratios["step_over_floor"] = float(np.median(np.median(x, axis=1) / floor))
            if ("against", P) in samples:
                y = samples[("against", P)]
                fig["against_p50_ms"] = float(np.median(y)) * 1e3
                ratios["over_against"] = float(np.median(np.median(x, axis=1) / np.median(y, axis=1)))
            fig["ratios"] = ratios
            out["cells"][cell(B, P)] = fig
        first = out["cells"][cell(B, cfg.positions[0])]
        log(f"run {run + 1}/{cfg.runs} batch {B}: p50 {first['p50_ms']:.3f} ms, p99 {first['p99_ms']:.3f} ms"
            + "".join(f", {k} {v:.3g}" for k, v in first["ratios"].items()))
    return out


def _median_over_runs(per_run: list) -> dict:
    """{cell: figures} with every number the median over runs (a single run is returned as it is)."""
    if len(per_run) == 1:
        return per_run[0]["cells"]
    out = {}
    for c, fig in per_run[0]["cells"].items():
        m = {}
        for k, v in fig.items():
            if k == "ratios":
                m[k] = {r: float(np.median([run["cells"][c]["ratios"][r] for run in per_run])) for r in v}
            elif isinstance(v, (int, float)):
                m[k] = float(np.median([run["cells"][c][k] for run in per_run]))
        out[c] = m
    return out


def robots_fit(figures: dict, cfg: ArtifactConfig) -> dict:
    """Robots that fit one period at the margin: B robots per call (worst p99 over positions), as many
    consecutive calls as fit in margin x period; the best measured B wins."""
    period_ms = 1e3 / cfg.hz
    budget_ms = cfg.margin * period_ms
    per_batch = {}
    for B in cfg.batches:
        p99 = max(figures[cell(B, P)]["p99_ms"] for P in cfg.positions)
        calls = int(budget_ms // p99) if p99 > 0 else 0
        per_batch[str(B)] = {"p99_ms": p99, "p99_over_period": p99 / period_ms, "fits": p99 <= budget_ms,
                             "calls_per_period": calls, "robots": calls * B}
    best = max(per_batch.items(), key=lambda kv: kv[1]["robots"])
    return {"hz": cfg.hz, "period_ms": period_ms, "margin": cfg.margin, "budget_ms": budget_ms,
            "per_batch": per_batch, "robots": best[1]["robots"], "at_batch": int(best[0])}


# ---- reading -----------------------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    a, m, cfg = report["artifact"], report["machine"], report["config"]
    L = [f"`{a['name']}` ({a['flavour']}, {a['precision']}) on {a['backend']}, {cfg['threads']} thread(s); "
         f"{m.get('cpu', '?')}, {m.get('cores')} cores; onnxruntime {m.get('onnxruntime')}"
         + (f", TensorRT {m['tensorrt']}" if m.get("tensorrt") else "")
         + f"; {cfg['runs']} run(s), {report['elapsed_s']:.0f} s."]
    if report.get("against"):
        L.append(f"Reference (`--against`): `{report['against']['name']}` ({report['against']['precision']}), "
                 "measured in the same rounds.")
    if report.get("slowdown"):
        L.append(f"**Test run: every call of the artifact made {report['slowdown']}x slower.**")
    if report.get("floor_note"):
        L.append(report["floor_note"])
    L.append("")
    head = ["batch", "position", "p50 ms", "p95 ms", "p99 ms", "max ms", "jitter ms (p99-p50)", "floor ms",
            "step / floor"] + (["vs reference"] if report.get("against") else [])
    L.append("| " + " | ".join(head) + " |")
    L.append("|" + "---|" * len(head))
    for c, f in report["figures"].items():
        B, P = c[1:].split("@")
        row = [B, P] + [f"{f[k]:.3f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "jitter_ms")]
        row += [f"{f['floor_ms']:.3f}" if "floor_ms" in f else "-",
                f"{f['ratios']['step_over_floor']:.2f}x" if "step_over_floor" in f["ratios"] else "-"]
        if report.get("against"):
            row.append(f"{f['ratios']['over_against']:.2f}x")
        L.append("| " + " | ".join(row) + " |")
    bw = [v for r in report["runs"] for v in r["bandwidth_GBps"].values()]
    L.append(f"\nFloor = ({a['weight_bytes'] / 1e6:.2f} MB weights [{a['weight_bytes_from']}] + 2 x batch x "
             f"{a['state_bytes_per_robot'] / 1e6:.3f} MB state) / bandwidth"
             + (f" ({np.median(bw):.1f} GB/s, one-thread GEMV, same rounds)." if bw else "."))
    below = [c for c, f in report["figures"].items() if f["ratios"].get("step_over_floor", 2.0) < 1.0]
    if below:
        L.append(f"Step / floor below 1 ({', '.join(below)}): the weights sit in the CPU cache, so the DRAM floor "
                 "does not bind and step / floor moves with the neighbours' memory traffic.")
    fit = report.get("fit")
    if fit:
        how = (f"**{fit['robots']} robots** fit (batch {fit['at_batch']} x "
               f"{fit['per_batch'][str(fit['at_batch'])]['calls_per_period']} calls per period)" if fit["robots"]
               else "**no robot fits**: every measured batch's p99 is over the budget")
        L.append(f"\nAt {fit['hz']:g} Hz (period {fit['period_ms']:.1f} ms, budget p99 <= {fit['margin']:.0%} = "
                 f"{fit['budget_ms']:.1f} ms): {how}. "
                 + "; ".join(f"batch {B}: p99 = {v['p99_over_period']:.1%} of the period"
                             for B, v in fit["per_batch"].items()) + ".")
    return "\n".join(L) + "\n"
