"""GPU check of the Triton step kernels as a TensorRT plugin ships them, and the one-env-step timing.

    python -m lram.kernels.gpu_check --out DIR            # a CUDA machine: PyTorch CUDA, Triton, CuPy (no TensorRT)
    python -m lram.kernels.gpu_check --out DIR --dry-run  # any CPU: the same pipeline through Triton's interpreter

GPU mode (one command, a few minutes):
1. Compiles the kernels ahead of time (kernels/build.py, the plugin's path): the cubin for this GPU and the
   portable sm_87 PTX, which the driver JIT-compiles here, as it will on Orin, Hopper and Thor. Loads both with
   CuPy (cuModuleLoad, no Triton launcher), launches them with the plugin's launch geometry
   (trt_plugins.mlstm_launch / slstm_launch) and compares with kernels/reference.py in float64: random
   inputs, invalid first tokens, 10 chained env steps; max relative error <= 1e-5.
2. Times one environment step (3 tokens) of the 16M preset (8 x 512, sLSTM at block 1, 4 heads) built from the
   fused kernels + cuBLAS projections (torch matmuls), random weights, in a CUDA graph with ping-pong state
   (two steps per graph), at batch 1 and 16; against PyTorch eager (xlstm xLSTMBlockStack.step three times;
   sLSTM backend "vanilla") and against the floor (weight bytes + 2 x state bytes) / device bandwidth
   (measured with a large device-to-device copy).
Dry run: the kernels in the interpreter against the reference, the AOT artifacts' parameter lists against
the launch argument lists (PTX built in a subprocess, or --kernel-dir), and one env step of a small preset
through the fused step (interpreter kernels) against the same step with the NumPy reference cells.
Writes DIR/gpu_check.json. Exit code 0 when all checks pass, 1 otherwise. Claims no number without a GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import reference as ref

TOL = 1e-5

MLSTM_CASES = [  # (B, T, NH, DH)
    (1, 3, 4, 256), (16, 3, 4, 256), (3, 3, 4, 64), (2, 3, 4, 384), (2, 3, 4, 640), (2, 1, 2, 48),
]
SLSTM_CASES = [(1, 3, 4, 128), (16, 3, 4, 128), (3, 3, 2, 48), (2, 3, 4, 320)]
DRY_MLSTM_CASES = [(3, 3, 2, 48), (2, 1, 1, 64)]  # the interpreter is slow: small shapes
DRY_SLSTM_CASES = [(3, 3, 2, 32), (5, 1, 1, 16)]

PRESET_16M = dict(blocks=8, dim=512, slstm_at=(1,), heads=4, conv=4, qkv_block=4, proj_factor=2.0,
                  ffn_factor=1.3)
PRESET_SMALL = dict(PRESET_16M, blocks=2, dim=64)  # the dry run's: mLSTM DH 32, sLSTM DH 16


# ---------------------------------------------------------------------------------------------------------
# CPU side: reference self-checks
# ---------------------------------------------------------------------------------------------------------
def reference_checks(seed: int = 0) -> dict:
    """float32 reference vs float64 reference on the check cases: bounds what the GPU can be held to."""
    out = {}
    for (B, T, NH, DH) in MLSTM_CASES[2:4]:
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
# the 16M step from the fused kernels + torch matmuls, and its baselines
# ---------------------------------------------------------------------------------------------------------
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

    def __init__(self, torch, cells, p=PRESET_16M, batch: int = 1, seed: int = 0, device: str = "cuda"):
        self.t, self.cells, self.p, self.B, self.device = torch, cells, p, batch, device
        g = torch.Generator(device=device).manual_seed(seed)
        dev = dict(device=device, dtype=torch.float32)
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
        t = self.t
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
                h = t.empty(B, 3, self.NH, self.DH, device=self.device)
                si, so = blk["st"][p], blk["st"][1 - p]
                heads = lambda a: a.reshape(B, 3, self.NH, self.DH).contiguous()  # noqa: E731
                self.cells.mlstm(heads(q), heads(k), heads(v), ig, fg, self.valid, *si, h, *so)
                hn = self._norm(h.reshape(B, 3, self.I), blk["outnorm"], groups=self.NH)
                y = (hn + blk["skip"] * xc) * t.nn.functional.silu(z)
                x = x + y @ blk["down"].t()
            else:
                xc = self._conv(blk, xn)
                D = self.H // self.NH
                hw = lambda a, w: t.einsum("btnd,ned->btne", a.reshape(B, 3, self.NH, D), w).reshape(B, 3, self.H)
                wx = t.cat([hw(xc, blk["gates"][0]), hw(xc, blk["gates"][1]), hw(xn, blk["gates"][2]),
                            hw(xn, blk["gates"][3])], -1).contiguous()
                y = t.empty(B, 3, self.H, device=self.device)
                si, so = blk["st"][p], blk["st"][1 - p]
                self.cells.slstm(wx, self.valid, *si, blk["R"], blk["b"], y, *so)
                x = x + self._norm(y, blk["gn"], groups=self.NH)
                xf = self._norm(x, blk["ffn_norm"])
                u = xf @ blk["up"].t()
                x = x + (t.nn.functional.gelu(u[..., : self.F]) * u[..., self.F:]) @ blk["down"].t()
        self.out = self._norm(x, self.post)
        self.parity = 1 - p
        return self.out

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


# ---------------------------------------------------------------------------------------------------------
# the cells of a step: AOT artifacts through CuPy (GPU), the Triton interpreter or the NumPy reference (CPU)
# ---------------------------------------------------------------------------------------------------------
class AotCells:
    """Launches the AOT-compiled kernels (a cubin or PTX file, loaded by CuPy: cuModuleLoad) with the launch
    geometry and argument order of the TensorRT plugins, on torch CUDA tensors, on torch's current stream."""

    def __init__(self, cp, torch, files: dict, metas: dict):
        from . import trt_plugins as tp

        self.cp, self.torch, self.tp, self.metas = cp, torch, tp, metas
        self.fns = {k: cp.RawModule(path=str(files[k])).get_function(metas[k]["entry"]) for k in files}

    def _launch(self, kernel, geo, tensors_in, tensors_out):
        stream = self.cp.cuda.ExternalStream(self.torch.cuda.current_stream().cuda_stream)
        args = (*map(_ptr, tensors_in), *(np.int32(int(a)) for a in geo["args"]), *map(_ptr, tensors_out))
        with stream:  # RawKernel launches on CuPy's current stream: make it torch's (also during graph capture)
            self.fns[kernel](tuple(int(g) for g in geo["grid"]), geo["block"], args, shared_mem=geo["shared_mem"])

    def mlstm(self, q, k, v, ig, fg, valid, C, n, m, h, C2, n2, m2):
        geo = self.tp.mlstm_launch(tuple(q.shape), self.metas["mlstm_step"])
        self._launch("mlstm_step", geo, (q, k, v, ig, fg, valid, C, n, m), (h, C2, n2, m2))

    def slstm(self, wx, valid, h, c, n, m, R, b, y, h2, c2, n2, m2):
        geo = self.tp.slstm_launch(tuple(wx.shape), tuple(R.shape), self.metas["slstm_step"])
        self._launch("slstm_step", geo, (wx, valid, h, c, n, m, R, b), (y, h2, c2, n2, m2))


def _ptr(a):
    """A torch CUDA tensor as a raw device pointer argument (no DLPack: its stream handshake would touch the
    legacy stream during CUDA-graph capture). The caller passes contiguous tensors it keeps alive."""
    if not a.is_contiguous():
        raise ValueError("kernel arguments must be contiguous")
    return np.uint64(a.data_ptr())


class InterpretedCells:
    """The Triton kernels on CPU torch tensors (TRITON_INTERPRET=1)."""

    def __init__(self):
        from . import interpret

        self.sk = interpret.kernels()

    def mlstm(self, *a):
        self.sk.run_mlstm(*a)

    def slstm(self, *a):
        self.sk.run_slstm(*a)


class ReferenceCells:
    """kernels/reference.py (NumPy float32) on CPU torch tensors."""

    def __init__(self, torch):
        self.torch = torch

    def _run(self, fn, ins, outs):
        res = fn(*(x.numpy() for x in ins))
        for o, r in zip(outs, res):
            o.copy_(self.torch.from_numpy(np.ascontiguousarray(r)))

    def mlstm(self, *a):
        self._run(ref.mlstm_cell_step, a[:9], a[9:])

    def slstm(self, *a):
        self._run(ref.slstm_cell_step, a[:8], a[8:])


def _new(torch, shape, device):
    return torch.full(tuple(shape), float("nan"), dtype=torch.float32, device=device)


def correctness(torch, cells, device: str, mcases, scases, seed: int = 0, chain: int = 10) -> dict:
    """Max relative error of the cells against the float64 reference: 1 step from a warm state and `chain`
    chained steps from a zero state, first token invalid in row 0."""
    res = {}
    dev = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(device)  # noqa: E731
    for (B, T, NH, DH) in mcases:
        for steps in (1, chain):
            inp = ref.random_mlstm_inputs(B, T, NH, DH, seed=seed, steps_warm=(steps == 1),
                                          valid_first=[0] + [1] * (B - 1))
            st = {x: dev(inp[x]) for x in ("C", "n", "m")}
            want = {x: inp[x].astype(np.float64) for x in ("C", "n", "m")}
            rng, err = np.random.default_rng(seed + 1), 0.0
            for s in range(steps):
                if s:
                    for x in ("q", "k", "v"):
                        inp[x] = rng.standard_normal(inp[x].shape).astype(np.float32)
                d = {x: dev(inp[x]) for x in ("q", "k", "v", "igate", "fgate", "valid")}
                h, out = _new(torch, (B, T, NH, DH), device), {x: _new(torch, st[x].shape, device) for x in st}
                cells.mlstm(d["q"], d["k"], d["v"], d["igate"], d["fgate"], d["valid"], st["C"], st["n"], st["m"],
                            h, out["C"], out["n"], out["m"])
                wh, wC, wn, wm = ref.mlstm_cell_step(inp["q"], inp["k"], inp["v"], inp["igate"], inp["fgate"],
                                                     inp["valid"], want["C"], want["n"], want["m"], dtype=np.float64)
                got = [h.cpu().numpy(), *(out[x].cpu().numpy() for x in ("C", "n", "m"))]
                err = max(err, _err(got, [wh, wC, wn, wm]))
                st, want = out, dict(C=wC, n=wn, m=wm)
            res[f"mlstm_B{B}_T{T}_NH{NH}_DH{DH}_steps{steps}"] = err
    for (B, T, NH, DH) in scases:
        H = NH * DH
        for steps in (1, chain):
            inp = ref.random_slstm_inputs(B, T, NH, DH, seed=seed, steps_warm=(steps == 1),
                                          valid_first=[0] + [1] * (B - 1))
            R, b = dev(inp["R"]), dev(inp["b"])
            st = {x: dev(inp[x]) for x in "hcnm"}
            want = {x: inp[x].astype(np.float64) for x in "hcnm"}
            rng, err = np.random.default_rng(seed + 2), 0.0
            for s in range(steps):
                if s:
                    inp["wx"] = rng.standard_normal(inp["wx"].shape).astype(np.float32)
                y, out = _new(torch, (B, T, H), device), {x: _new(torch, st[x].shape, device) for x in st}
                cells.slstm(dev(inp["wx"]), dev(inp["valid"]), st["h"], st["c"], st["n"], st["m"], R, b, y,
                            out["h"], out["c"], out["n"], out["m"])
                wy, *ws = ref.slstm_cell_step(inp["wx"], inp["valid"], *(want[x] for x in "hcnm"), inp["R"],
                                              inp["b"], dtype=np.float64)
                err = max(err, _err([y.cpu().numpy(), *(out[x].cpu().numpy() for x in "hcnm")], [wy, *ws]))
                st, want = out, dict(zip("hcnm", ws))
            res[f"slstm_B{B}_T{T}_NH{NH}_DH{DH}_steps{steps}"] = err
    return res


def _err(got, want) -> float:
    if not all(np.isfinite(g).all() for g in got):
        return float("inf")
    return max(ref.rel_err(g, w) for g, w in zip(got, want))


# ---------------------------------------------------------------------------------------------------------
# AOT artifacts
# ---------------------------------------------------------------------------------------------------------
KERNELS = ("mlstm_step", "slstm_step")
N_ARGS = {"mlstm_step": (9, 4, 4), "slstm_step": (8, 4, 5)}  # pointers in, int32 scalars, pointers out


def build_artifacts(archs, out: Path, kernel_dir: str | None = None) -> tuple[Path, dict]:
    """PTX + cubins + resources.json for archs: from kernel_dir if it has them, else python -m lram.kernels.build
    in a subprocess (the compiler cannot run in a process where the interpreter was chosen)."""
    if kernel_dir and all((Path(kernel_dir) / f"{k}.sm_{a}.ptx").exists() for k in KERNELS for a in archs):
        d = Path(kernel_dir)
    else:
        d = out / "kernels"
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        r = subprocess.run([sys.executable, "-m", "lram.kernels.build", "--out", str(d), "--arch", *archs],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"the AOT build failed:\n{r.stderr[-3000:]}")
    return d, json.loads((d / "resources.json").read_text())["kernels"]


def abi_check(metas: dict) -> dict:
    """Each artifact's PTX parameter list = the launch argument list (pointers, 4 x int32, pointers)."""
    res = {}
    for name, meta in metas.items():
        n_in, n_s, n_out = N_ARGS[meta["kernel"]]
        want = ["u64"] * n_in + ["u32"] * n_s + ["u64"] * n_out
        res[name] = {"params": len(meta["params"]), "pass": meta["params"] == want}
    return res




def time_fused(torch, cells, batch: int, iters: int) -> dict:
    step = FusedStep(torch, cells, batch=batch)
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


def run_gpu(args, report: dict, out: Path) -> bool:
    import cupy as cp
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch reports no CUDA device")
    report["gpu"] = torch.cuda.get_device_name(0)
    report["torch"], report["cupy"] = torch.__version__, cp.__version__
    cc = "".join(map(str, torch.cuda.get_device_capability(0)))
    archs = ["87"] + ([cc] if cc in ("90", "110") else [])
    kdir, metas = build_artifacts(archs, out, args.kernel_dir)
    report["artifacts"] = {"dir": str(kdir), "abi": abi_check(metas)}
    ok = all(v["pass"] for v in report["artifacts"]["abi"].values())
    flavours = {"ptx_sm_87_jit": {k: kdir / f"{k}.sm_87.ptx" for k in KERNELS}}
    if cc in ("90", "110"):
        flavours[f"cubin_sm_{cc}"] = {k: kdir / f"{k}.sm_{cc}.cubin" for k in KERNELS}
    report["correctness"] = {}
    for flav, files in flavours.items():
        arch = "87" if flav.startswith("ptx") else cc
        cells = AotCells(cp, torch, files, {k: metas[f"{k}.sm_{arch}"] for k in KERNELS})
        corr = correctness(torch, cells, "cuda", MLSTM_CASES, SLSTM_CASES, args.seed)
        torch.cuda.synchronize()
        report["correctness"][flav] = {"max_rel_err": corr, "tolerance": TOL,
                                       "pass": all(v <= TOL for v in corr.values())}
        ok &= report["correctness"][flav]["pass"]
    best = list(flavours)[-1]  # the cubin for this GPU when there is one
    arch = "87" if best.startswith("ptx") else cc
    cells = AotCells(cp, torch, flavours[best], {k: metas[f"{k}.sm_{arch}"] for k in KERNELS})
    bw = measure_bandwidth(torch)
    report["bandwidth_GBps"] = bw / 1e9
    report["timing"] = {"kernels": best}
    for B in args.batch:
        entry = {}
        try:
            entry["fused"] = time_fused(torch, cells, B, args.iters)
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


def run_dry(args, report: dict, out: Path) -> bool:
    """The GPU check's pipeline on a CPU: interpreter kernels, AOT parameter lists, a fused step vs reference."""
    from . import interpret

    interpret.enable()  # before torch may pull triton in
    import torch

    torch.set_num_threads(1)
    report["gpu"] = "no GPU (dry run: Triton interpreter on the CPU; no timing)"
    corr = correctness(torch, InterpretedCells(), "cpu", DRY_MLSTM_CASES, DRY_SLSTM_CASES, args.seed, chain=3)
    report["correctness"] = {"interpreter": {"max_rel_err": corr, "tolerance": TOL,
                                             "pass": all(v <= TOL for v in corr.values())}}
    ok = report["correctness"]["interpreter"]["pass"]
    kdir, metas = build_artifacts(["87", "90", "110"], out, args.kernel_dir)
    report["artifacts"] = {"dir": str(kdir), "abi": abi_check(metas)}
    ok &= all(v["pass"] for v in report["artifacts"]["abi"].values())
    outs = []
    for cells in (InterpretedCells(), ReferenceCells(torch)):
        step = FusedStep(torch, cells, p=PRESET_SMALL, batch=2, device="cpu")
        outs.append([step().clone() for _ in range(2)])  # 2 env steps: the second reads the ping-pong state
    err = max(ref.rel_err(a.numpy(), b.numpy()) for a, b in zip(*outs))
    report["fused_step_vs_reference_cells"] = {"preset": "small (2 x 64)", "batch": 2, "steps": 2, "max_rel_err": err,
                                               "pass": err <= 1e-4}
    return ok and err <= 1e-4


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lram.kernels.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for gpu_check.json")
    ap.add_argument("--dry-run", action="store_true", help="the same checks on the CPU (Triton interpreter), no timing")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kernel-dir", help="prebuilt artifacts (python -m lram.kernels.build --out DIR)")
    ap.add_argument("--skip-eager", action="store_true", help="skip the xlstm PyTorch eager baseline")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report = {"host": platform.node(), "python": sys.version.split()[0], "preset": "16M", **{"sizes": preset_sizes()}}
    ref_errs = reference_checks(args.seed)
    report["reference_self_check"] = {"fp32_vs_fp64_max_rel_err": ref_errs,
                                      "pass": all(v <= TOL for v in ref_errs.values())}
    rc_ok = report["reference_self_check"]["pass"]
    try:
        rc_ok &= (run_dry if args.dry_run else run_gpu)(args, report, out)
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
    print(json.dumps({k: report.get(k) for k in ("gpu", "pass", "seconds", "error")}))
    return 0 if rc_ok else 1


if __name__ == "__main__":
    sys.exit(main())
