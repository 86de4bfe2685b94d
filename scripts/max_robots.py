"""How many robots can the 16M preset serve at 50 Hz on this CPU (p99 of Policy.step under the 20 ms period)?

Usage: .venv/bin/python scripts/max_robots.py [--threads T] [N ...]   (robot counts to try, default 1 2 3 4 6 8;
ONNX Runtime intra-op threads, default 1; random perturbed weights: latency does not depend on training)
"""
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

warnings.simplefilter("ignore"); torch.set_num_threads(1)
from lram.model.config import preset, TaskSpec
from lram.model.lram import LRAM
from lram.export.onnx_export import export_onnx
from lram.runtime.policy import Policy
task = TaskSpec(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4, action_low=(-1,)*4, action_high=(1,)*4, reward_scale=200., target_return=100.)
torch.manual_seed(0)
m = LRAM(preset("16M", encoders=("state",)), task).eval()
with torch.no_grad():
    for p in m.parameters(): p.add_(0.02 * torch.randn_like(p))
OUT = tempfile.mkdtemp() + "/16M.onnx"
export_onnx(m, OUT, flavour="ort")  # the default of lram export: the fastest on ONNX Runtime
args = sys.argv[1:]
threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
counts = [int(a) for i, a in enumerate(args) if a != "--threads" and (i == 0 or args[i - 1] != "--threads")]
for n in counts or (1, 2, 3, 4, 6, 8):
    pol = Policy.load(OUT, n_robots=n, backend="ort-cpu", threads=threads)
    obs = np.zeros((n, 39), np.float32); ts = []
    for i in range(230):
        t0 = time.perf_counter(); pol.step(obs, rtg=np.full(n, 50.0, np.float32), prev_reward=np.zeros(n, np.float32), first=np.full(n, i == 0)); ts.append(time.perf_counter() - t0)
    ts = np.array(ts[30:]) * 1e3
    print(f"robots {n}: p50 {np.median(ts):.2f} ms  p99 {np.percentile(ts, 99):.2f} ms  max {ts.max():.2f} ms  (period 20 ms, {threads} thread(s))")
