"""GPU check of the fused step kernels: correctness against the NumPy reference and one-env-step timing.

    python -m lram.kernels.gpu_check --out DIR            # on a CUDA machine (PyTorch CUDA + CuPy; no TensorRT)
    python -m lram.kernels.gpu_check --out DIR --dry-run  # anywhere: reference checks only, reports "no GPU"

1. Builds lram_mlstm_step_f32 / lram_slstm_step_f32 (nvcc -> cubin for this GPU if nvcc exists, else NVRTC via
   CuPy) and compares them with kernels/reference.py (float64) on random inputs, incl. invalid first tokens and
   10 chained env steps: max relative error must be <= 1e-5.
2. Times one environment step (3 tokens) of the 16M preset (8 x 512, sLSTM at block 1, 4 heads) built from the
   fused kernels + cuBLAS projections (torch matmuls), random weights, captured in a CUDA graph; against
   PyTorch eager (xlstm xLSTMBlockStack.step three times; sLSTM backend "vanilla") and against the floor
   (weight bytes + 2 x state bytes) / device bandwidth (measured with a large device-to-device copy).
Writes DIR/gpu_check.json. Exit code 0 when all checks pass, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import reference as ref

KERNEL_DIR = Path(__file__).resolve().parent
TOL = 1e-5

MLSTM_CASES = [  # (B, T, NH, DH)
    (1, 3, 4, 256), (4, 3, 4, 256), (3, 3, 4, 64), (2, 3, 4, 384), (2, 3, 4, 640), (1, 1, 2, 48),
]
SLSTM_CASES = [(1, 3, 4, 128), (4, 3, 4, 128), (3, 3, 2, 48), (2, 3, 4, 320)]

PRESET_16M = dict(blocks=8, dim=512, slstm_at=(1,), heads=4, conv=4, qkv_block=4, proj_factor=2.0,
                  ffn_factor=1.3)


# ---------------------------------------------------------------------------------------------------------
# CPU side: reference self-checks (also the --dry-run)
# ---------------------------------------------------------------------------------------------------------
def reference_checks(seed: int = 0) -> dict:
    """float32 reference vs float64 reference on the check cases: bounds what the GPU can be held to."""
    out = {}
    for (B, T, NH, DH) in MLSTM_CASES[:3]:
        inp = ref.random_mlstm_inputs(B, T, NH, DH, seed=seed, valid_first=[0] + [1] * (B - 1))
        a, b = ref.mlstm_cell_step(**inp), ref.mlstm_cell_step(**inp, dtype=np.float64)
        out[f"mlstm_{B}x{T}x{NH}x{DH}"] = max(ref.rel_err(x, y) for x, y in zip(a, b))
    for (B, T, NH, DH) in SLSTM_CASES[:3]:
        inp = ref.random_slstm_inputs(B, T, NH, DH, seed=seed, valid_first=[0] + [1] * (B - 1))
        a, b = ref.slstm_cell_step(**inp), ref.slstm_cell_step(**inp, dtype=np.float64)
        out[f"slstm_{B}x{T}x{NH}x{DH}"] = max(ref.rel_err(x, y) for x, y in zip(a, b))
    return out


def preset_sizes(p=PRESET_16M, batch: int = 1) -> dict:
    """Parameter and state counts of the step model (floats), for the bandwidth floor."""
    H, NH, K = p["dim"], p["heads"], p["conv"]
    inner = int(p["proj_factor"] * H)
    DH = inner // NH
    ffn = int(math.ceil(p["ffn_factor"] * H / 64) * 64)
    w = s = 0
    for i in range(p["blocks"]):
        if i in p["slstm_at"]:
            w += H + K * H + H + 4 * H * (H // NH) + NH * 4 * (H // NH) ** 2 + 4 * H + H  # norm, conv, 4 gates, R, b, gn
            w += H + H * 2 * ffn + ffn * H  # ffn norm, up (gated), down
            s += K * H + 4 * H
        else:
            w += H + H * 2 * inner + K * inner + inner + 3 * inner * p["qkv_block"]
            w += 2 * (3 * inner * NH + NH) + inner + inner + inner * H  # i/f gates, outnorm, skip, down
            s += K * inner + NH * (DH * DH + DH + 1)
    w += H  # post norm
    return {"weights_floats": w, "state_floats_per_robot": s, "state_floats": s * batch, "inner": inner, "DH": DH,
            "ffn": ffn}


# ---------------------------------------------------------------------------------------------------------
# GPU side
# ---------------------------------------------------------------------------------------------------------
def _source(name: str) -> str:
    """The .cu source with the header inlined (NVRTC needs no include path then)."""
    src = (KERNEL_DIR / f"{name}.cu").read_text()
    return src.replace('#include "lram_kernels.cuh"', (KERNEL_DIR / "lram_kernels.cuh").read_text())


def load_kernels(cp, report: dict):
    """{'mlstm': RawKernel, 'slstm': RawKernel}: nvcc cubin for this device if nvcc is there, else NVRTC."""
    from . import build

    dev = cp.cuda.Device()
    arch = "".join(map(str, dev.compute_capability)) if isinstance(dev.compute_capability, tuple) else dev.compute_capability
    mods = {}
    try:
        nvcc = build.find_nvcc()
        outdir = Path(os.environ.get("LRAM_KERNEL_CACHE", "/tmp/lram_kernels"))
        for k in ("mlstm_step", "slstm_step"):
            cub = build.compile_one(build.SOURCES[k], outdir / f"{k}.sm_{arch}.cubin", arch, "cubin", nvcc)
            mods[k] = cp.RawModule(path=str(cub))
        report["compiler"] = f"nvcc {nvcc} -> sm_{arch} cubin"
    except Exception as e:  # no nvcc, or nvcc too old for this GPU: NVRTC
        for k in ("mlstm_step", "slstm_step"):
            mods[k] = cp.RawModule(code=_source(k), options=("-std=c++17",))
        report["compiler"] = f"NVRTC via CuPy (nvcc path failed: {e})"
    return {"mlstm": mods["mlstm_step"].get_function("lram_mlstm_step_f32"),
            "slstm": mods["slstm_step"].get_function("lram_slstm_step_f32")}


def launch_mlstm(cp, fn, q, k, v, ig, fg, valid, C, n, m, h, C2, n2, m2, stream=None):
    B, T, NH, DH = q.shape
    ny = (DH + 31) // 32
    smem = (3 * DH + 32 * ny + 32 + 8) * 4
    fn(((DH + 31) // 32, B * NH, 1), (32, ny, 1),
       (q, k, v, ig, fg, valid, C, n, m, np.int32(B), np.int32(T), np.int32(NH), np.int32(DH), h, C2, n2, m2),
       shared_mem=smem, stream=stream)


def launch_slstm(cp, fn, wx, valid, h, c, n, m, R, b, y, h2, c2, n2, m2, stream=None):
    B, T, _ = wx.shape
    NH, _, DH = R.shape
    fn((B * NH, 1, 1), (256, 1, 1),
       (wx, valid, h, c, n, m, R, b, np.int32(B), np.int32(T), np.int32(NH), np.int32(DH), y, h2, c2, n2, m2),
       shared_mem=8 * DH * 4, stream=stream)


def _launch_mlstm_shaped(fn, a, B, T, NH, DH, stream):
    """launch_mlstm with raw pointers (shapes given explicitly): 9 inputs, then 4 outputs."""
    ny = (DH + 31) // 32
    fn(((DH + 31) // 32, B * NH, 1), (32, ny, 1),
       (*a[:9], np.int32(B), np.int32(T), np.int32(NH), np.int32(DH), *a[9:]),
       shared_mem=(3 * DH + 32 * ny + 32 + 8) * 4, stream=stream)


def _launch_slstm_shaped(fn, a, B, T, NH, DH, stream):
    """launch_slstm with raw pointers: 8 inputs, then 5 outputs."""
    fn((B * NH, 1, 1), (256, 1, 1), (*a[:8], np.int32(B), np.int32(T), np.int32(NH), np.int32(DH), *a[8:]),
       shared_mem=8 * DH * 4, stream=stream)


def correctness(cp, kern, seed: int = 0) -> dict:
    res = {}
    for case in MLSTM_CASES:
        B, T, NH, DH = case
        for steps in (1, 10):
            inp = ref.random_mlstm_inputs(B, T, NH, DH, seed=seed, steps_warm=(steps == 1),
                                          valid_first=[0] + [1] * (B - 1))
            st = {x: cp.asarray(inp[x]) for x in ("C", "n", "m")}
            want = dict(C=inp["C"], n=inp["n"], m=inp["m"])
            err = 0.0
            rng = np.random.default_rng(seed + 1)
            for s in range(steps):
                if s:
                    for x in ("q", "k", "v"):
                        inp[x] = rng.standard_normal(inp[x].shape).astype(np.float32)
                d = {x: cp.asarray(inp[x]) for x in ("q", "k", "v", "igate", "fgate", "valid")}
                h = cp.empty((B, T, NH, DH), cp.float32)
                out = {x: cp.empty_like(st[x]) for x in st}
                launch_mlstm(cp, kern["mlstm"], d["q"], d["k"], d["v"], d["igate"], d["fgate"], d["valid"],
                             st["C"], st["n"], st["m"], h, out["C"], out["n"], out["m"])
                wh, wC, wn, wm = ref.mlstm_cell_step(inp["q"], inp["k"], inp["v"], inp["igate"], inp["fgate"],
                                                     inp["valid"], want["C"], want["n"], want["m"], dtype=np.float64)
                err = max(err, ref.rel_err(cp.asnumpy(h), wh))
                # compare the chained state against the float64 chain (the kernel never sees float64 state)
                for x, w in (("C", wC), ("n", wn), ("m", wm)):
                    err = max(err, ref.rel_err(cp.asnumpy(out[x]), w))
                st, want = out, dict(C=wC, n=wn, m=wm)
            res[f"mlstm_B{B}_T{T}_NH{NH}_DH{DH}_steps{steps}"] = err
    for case in SLSTM_CASES:
        B, T, NH, DH = case
        H = NH * DH
        for steps in (1, 10):
            inp = ref.random_slstm_inputs(B, T, NH, DH, seed=seed, steps_warm=(steps == 1),
                                          valid_first=[0] + [1] * (B - 1))
            R, b = cp.asarray(inp["R"]), cp.asarray(inp["b"])
            st = {x: cp.asarray(inp[x]) for x in "hcnm"}
            want = {x: inp[x] for x in "hcnm"}
            err = 0.0
            rng = np.random.default_rng(seed + 2)
            for s in range(steps):
                if s:
                    inp["wx"] = rng.standard_normal(inp["wx"].shape).astype(np.float32)
                wx, valid = cp.asarray(inp["wx"]), cp.asarray(inp["valid"])
                y = cp.empty((B, T, H), cp.float32)
                out = {x: cp.empty_like(st[x]) for x in st}
                launch_slstm(cp, kern["slstm"], wx, valid, st["h"], st["c"], st["n"], st["m"], R, b, y,
                             out["h"], out["c"], out["n"], out["m"])
                wy, *ws = ref.slstm_cell_step(inp["wx"], inp["valid"], *(want[x] for x in "hcnm"), inp["R"],
                                              inp["b"], dtype=np.float64)
                err = max(err, ref.rel_err(cp.asnumpy(y), wy))
                for x, w in zip("hcnm", ws):
                    err = max(err, ref.rel_err(cp.asnumpy(out[x]), w))
                st, want = out, dict(zip("hcnm", ws))
            res[f"slstm_B{B}_T{T}_NH{NH}_DH{DH}_steps{steps}"] = err
    return res


def measure_bandwidth(torch, nbytes: int = 1 << 30, iters: int = 20) -> float:
    """Device bandwidth (bytes/s) of a large device-to-device copy (read + write counted)."""
    a = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").normal_()
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(iters):
        b.copy_(a)
    e1.record()
    torch.cuda.synchronize()
    return 2 * nbytes * iters / (e0.elapsed_time(e1) / 1e3)


class FusedStep:
    """One env step (3 tokens) of the preset from the fused kernels + torch matmuls. Random weights, fp32.

    Structure per the xlstm blocks (pre-norm, up projection, causal conv + swish, headwise q/k/v, gates, fused
    cell, group norm, skip, output gate, down projection, residual; sLSTM: conv, headwise gates, fused cell,
    group norm, gated-GELU FFN). Numerics are not compared with xlstm here; this measures the cost.
    """

    def __init__(self, torch, cp, kern, p=PRESET_16M, batch: int = 1, seed: int = 0):
        self.t, self.cp, self.kern, self.p, self.B = torch, cp, kern, p, batch
        g = torch.Generator(device="cuda").manual_seed(seed)
        dev = dict(device="cuda", dtype=torch.float32)
        rnd = lambda *s, scale=None: torch.randn(*s, generator=g, **dev) * (scale or 1.0 / math.sqrt(s[-1]))
        sz = preset_sizes(p, batch)
        H, NH, K = p["dim"], p["heads"], p["conv"]
        I, DH, F, QB = sz["inner"], sz["DH"], sz["ffn"], p["qkv_block"]
        self.H, self.I, self.DH, self.F, self.NH, self.K = H, I, DH, F, NH, K
        self.blocks = []
        for i in range(p["blocks"]):
            if i in p["slstm_at"]:
                D = H // NH
                blk = dict(kind="s", norm=rnd(H, scale=0.1), conv_w=rnd(K, H, scale=0.5), conv_b=rnd(H, scale=0.1),
                           gates=rnd(4, NH, D, D), R=rnd(NH, 4 * D, D), b=rnd(4 * H, scale=0.5), gn=rnd(H, scale=0.1),
                           ffn_norm=rnd(H, scale=0.1), up=rnd(2 * F, H), down=rnd(H, F),
                           conv=torch.zeros(batch, K - 1, H, **dev),
                           st=[[torch.zeros(batch, H, **dev) for _ in range(4)] for _ in range(2)])
            else:
                blk = dict(kind="m", norm=rnd(H, scale=0.1), up=rnd(2 * I, H), conv_w=rnd(K, I, scale=0.5),
                           conv_b=rnd(I, scale=0.1), qkv=rnd(3, I // QB, QB, QB), gate_w=rnd(2 * NH, 3 * I),
                           gate_b=rnd(2 * NH, scale=1.0), outnorm=rnd(I, scale=0.1), skip=rnd(I, scale=1.0),
                           down=rnd(H, I), conv=torch.zeros(batch, K - 1, I, **dev),
                           st=[[torch.zeros(batch, NH, DH, DH, **dev), torch.zeros(batch, NH, DH, 1, **dev),
                                torch.zeros(batch, NH, 1, 1, **dev)] for _ in range(2)])
            self.blocks.append(blk)
        self.post = rnd(H, scale=0.1)
        self.valid = torch.ones(batch, 3, **dev)
        self.parity = 0
        self.x = torch.randn(batch, 3, H, generator=g, **dev)
        self.weight_bytes = 4 * sum(v.numel() for b in self.blocks for k, v in b.items()
                                    if k not in ("kind", "conv", "st")) + 4 * H
        self.state_bytes = 4 * sum(v.numel() for b in self.blocks for v in [b["conv"], *b["st"][0]])

    def _conv(self, blk, x):  # causal depthwise conv over [conv state (K-1), 3 tokens]
        t = self.t
        seq = t.cat([blk["conv"], x], 1)
        out = sum(seq[:, j:j + 3] * blk["conv_w"][j] for j in range(self.K)) + blk["conv_b"]
        blk["conv"].copy_(seq[:, 3:])
        return out * t.sigmoid(out)

    def _norm(self, x, w, groups=None):
        t = self.t
        if groups:
            s = x.shape
            x = t.nn.functional.layer_norm(x.reshape(*s[:-1], groups, s[-1] // groups), (s[-1] // groups,))
            return x.reshape(s) * (1 + w)
        return t.nn.functional.layer_norm(x, (x.shape[-1],)) * (1 + w)

    def __call__(self):
        t, cp = self.t, self.cp
        stream = cp.cuda.ExternalStream(t.cuda.current_stream().cuda_stream)
        p, B, x = self.parity, self.B, self.x
        for blk in self.blocks:
            xn = self._norm(x, blk["norm"])
            if blk["kind"] == "m":
                up = xn @ blk["up"].t()
                xm, z = up[..., : self.I], up[..., self.I:]
                xc = self._conv(blk, xm)
                QB = self.p["qkv_block"]
                hw = lambda a, w: t.einsum("btgi,goi->btgo", a.reshape(B, 3, -1, QB), w).reshape(B, 3, self.I)
                q, k, v = hw(xc, blk["qkv"][0]), hw(xc, blk["qkv"][1]), hw(xm, blk["qkv"][2])
                gates = t.cat([q, k, v], -1) @ blk["gate_w"].t() + blk["gate_b"]
                ig, fg = gates[..., : self.NH].contiguous(), gates[..., self.NH:].contiguous()
                h = t.empty(B, 3, self.NH, self.DH, device="cuda")
                si, so = blk["st"][p], blk["st"][1 - p]
                keep = [q.reshape(B, 3, self.NH, self.DH).contiguous(), k.reshape(B, 3, self.NH, self.DH).contiguous(),
                        v.reshape(B, 3, self.NH, self.DH).contiguous(), ig, fg, self.valid, *si, h, *so]
                args = [_cp(cp, a) for a in keep]
                _launch_mlstm_shaped(self.kern["mlstm"], args, B, 3, self.NH, self.DH, stream)
                hn = self._norm(h.reshape(B, 3, self.I), blk["outnorm"], groups=self.NH)
                y = (hn + blk["skip"] * xc) * t.nn.functional.silu(z)
                x = x + y @ blk["down"].t()
            else:
                xc = self._conv(blk, xn)
                D = self.H // self.NH
                hw = lambda a, w: t.einsum("btnd,ned->btne", a.reshape(B, 3, self.NH, D), w).reshape(B, 3, self.H)
                wx = t.cat([hw(xc, blk["gates"][0]), hw(xc, blk["gates"][1]), hw(xn, blk["gates"][2]),
                            hw(xn, blk["gates"][3])], -1).contiguous()
                y = t.empty(B, 3, self.H, device="cuda")
                si, so = blk["st"][p], blk["st"][1 - p]
                keep = [wx, self.valid, *si, blk["R"], blk["b"], y, *so]
                args = [_cp(cp, a) for a in keep]
                _launch_slstm_shaped(self.kern["slstm"], args, B, 3, self.NH, D, stream)
                x = x + self._norm(y, blk["gn"], groups=self.NH)
                xf = self._norm(x, blk["ffn_norm"])
                u = xf @ blk["up"].t()
                x = x + (t.nn.functional.gelu(u[..., : self.F]) * u[..., self.F:]) @ blk["down"].t()
        self.out = self._norm(x, self.post)
        self.parity = 1 - p
        return self.out


def _cp(cp, a):
    """A torch CUDA tensor as a raw device pointer kernel argument (no DLPack: its stream handshake would
    touch the legacy stream during CUDA-graph capture). The caller passes contiguous tensors it keeps alive."""
    if not a.is_contiguous():
        raise ValueError("kernel arguments must be contiguous")
    return np.uint64(a.data_ptr())


def _time(torch, fn, iters: int, warmup: int = 5) -> dict:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    times = np.array(times)
    return {"median_ms": float(np.median(times)), "p10_ms": float(np.percentile(times, 10)),
            "p90_ms": float(np.percentile(times, 90)), "iters": iters}


def time_fused(torch, cp, kern, batch: int, iters: int) -> dict:
    step = FusedStep(torch, cp, kern, batch=batch)
    res = {"eager_fused_ms": _time(torch, step, iters)}
    # CUDA graph: the two ping-pong parities alternate, so capture two steps in one graph
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(4):
            step()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    try:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()
            step()
        r = _time(torch, g.replay, iters)
        res["graph_ms"] = {k: (v / 2 if k.endswith("_ms") else v) for k, v in r.items()}  # per env step
    except Exception as e:
        res["graph_error"] = f"{type(e).__name__}: {e}"
    res["weight_bytes"], res["state_bytes"] = step.weight_bytes, step.state_bytes
    return res


def time_xlstm_eager(torch, batch: int, iters: int, device: str = "cuda") -> dict:
    from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig, sLSTMLayerConfig,
                       xLSTMBlockStack, xLSTMBlockStackConfig)

    p = PRESET_16M
    cfg = xLSTMBlockStackConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(conv1d_kernel_size=p["conv"], qkv_proj_blocksize=p["qkv_block"],
                                                            num_heads=p["heads"], proj_factor=p["proj_factor"])),
        slstm_block=sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=p["heads"], conv1d_kernel_size=p["conv"],
                                                            bias_init="powerlaw_blockdependent"),
                                     feedforward=FeedForwardConfig(proj_factor=p["ffn_factor"], act_fn="gelu")),
        context_length=150, num_blocks=p["blocks"], embedding_dim=p["dim"], slstm_at=list(p["slstm_at"]))
    stack = xLSTMBlockStack(cfg).to(device).eval()
    with torch.no_grad():
        for prm in stack.parameters():
            prm.add_(torch.randn_like(prm) * 0.02)  # the stock init zeroes gate/recurrent weights
    x = torch.randn(batch, 3, p["dim"], device=device)
    state = {}

    @torch.no_grad()
    def env_step():
        nonlocal state
        for t in range(3):
            _, state = stack.step(x[:, t:t + 1], state)

    env_step()  # creates the state
    if device == "cpu":  # only for the CPU-side test of this baseline's construction
        t0 = time.perf_counter()
        env_step()
        return {"median_ms": (time.perf_counter() - t0) * 1e3, "iters": 1,
                "parameters": sum(prm.numel() for prm in stack.parameters())}
    r = _time(torch, env_step, iters)
    r["parameters"] = sum(prm.numel() for prm in stack.parameters())
    return r


def run_gpu(args, report: dict) -> bool:
    import cupy as cp
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch reports no CUDA device")
    report["gpu"] = torch.cuda.get_device_name(0)
    report["torch"], report["cupy"] = torch.__version__, cp.__version__
    kern = load_kernels(cp, report)
    corr = correctness(cp, kern, args.seed)
    report["correctness"] = {"max_rel_err": corr, "tolerance": TOL, "pass": all(v <= TOL for v in corr.values())}
    ok = report["correctness"]["pass"]
    bw = measure_bandwidth(torch)
    report["bandwidth_GBps"] = bw / 1e9
    report["timing"] = {}
    for B in args.batch:
        entry = {}
        try:
            entry["fused"] = time_fused(torch, cp, kern, B, args.iters)
            wb, sb = entry["fused"]["weight_bytes"], entry["fused"]["state_bytes"]
            entry["floor_ms"] = (wb + 2 * sb) / bw * 1e3
        except Exception as e:
            entry["fused_error"] = f"{type(e).__name__}: {e}"
            ok = False
        if not args.skip_eager:
            try:
                entry["xlstm_eager_step_x3"] = time_xlstm_eager(torch, B, max(5, args.iters // 4))
            except Exception as e:
                entry["xlstm_eager_error"] = f"{type(e).__name__}: {e}"
        report["timing"][f"batch{B}"] = entry
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lram.kernels.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for gpu_check.json")
    ap.add_argument("--dry-run", action="store_true", help="reference checks only (no GPU needed)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-eager", action="store_true", help="skip the xlstm PyTorch eager baseline")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report = {"host": platform.node(), "python": sys.version.split()[0], "preset": "16M", **{"sizes": preset_sizes()}}
    rc_ok = True
    ref_errs = reference_checks(args.seed)
    report["reference_self_check"] = {"fp32_vs_fp64_max_rel_err": ref_errs, "pass": all(v <= TOL for v in ref_errs.values())}
    rc_ok &= report["reference_self_check"]["pass"]
    if args.dry_run:
        report["gpu"] = "no GPU (dry run)"
    else:
        try:
            rc_ok &= run_gpu(args, report)
        except ImportError as e:
            report["gpu"] = f"no GPU stack: {e}"
            rc_ok = False
        except Exception as e:
            report.setdefault("gpu", "error")
            report["error"] = f"{type(e).__name__}: {e}"
            rc_ok = False
    report["seconds"] = round(time.time() - t0, 2)
    report["pass"] = bool(rc_ok)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    print(json.dumps({k: report[k] for k in ("gpu", "pass", "seconds")}))
    return 0 if rc_ok else 1


if __name__ == "__main__":
    sys.exit(main())
