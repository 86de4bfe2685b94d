"""How many robots can the 16M preset serve at 50 Hz on this CPU (p99 of Policy.step under the 20 ms period)?

Usage: .venv/bin/python scripts/max_robots.py [--threads T] [--standard] [N ...]   (robot counts to try, default
1 2 3 4 5 6 8 12 16, stopping after two counts every graph misses; ONNX Runtime intra-op threads, default 1;
--standard also measures the standard flavour in the same rounds; random perturbed weights: latency does not
depend on training). The measurement is lram.bench.robots (also the "robots" section of `lram bench`).
"""
import sys
import tempfile
import warnings

import torch

warnings.simplefilter("ignore"); torch.set_num_threads(1)
from lram.bench.latency import BenchConfig, make_models
from lram.bench.robots import DEFAULT_COUNTS, robots_at_hz, table
from lram.export.onnx_export import export_onnx

args = sys.argv[1:]
threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
counts = [int(a) for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] != "--threads")]
lram, _ = make_models("16M", BenchConfig(presets=("16M",)))  # the preset bench's perturbed random weights
out = tempfile.mkdtemp()
graphs = {"ort": export_onnx(lram, out + "/16M_ort.onnx", flavour="ort")}  # the default of lram export
if "--standard" in args:
    graphs["standard"] = export_onnx(lram, out + "/16M.onnx")
section = robots_at_hz(graphs, 50.0, counts or DEFAULT_COUNTS, threads=threads, progress=print)
print(table(section))
