"""How many robots can the 16M preset serve at 50 Hz on this CPU (p99 of Policy.step under the 20 ms period)?

Usage: .venv/bin/python scripts/max_robots.py [--threads T] [--ort] [--standard] [--graph P.onnx] [N ...]
(robot counts to try, default 1 2 3 4 5 6 8 12 16, stopping after two counts every graph misses; ONNX Runtime
intra-op threads, default 1). Measures the native flavour (the default of lram export); --ort / --standard also
measure those flavours in the same rounds; --graph measures that graph alone (no export: start several processes
on one graph to measure a machine's cores together). Random perturbed weights: latency does not depend on
training. The measurement is lram.bench.robots (also the "robots" section of `lram bench`).
"""
import sys
import tempfile
import warnings

args = sys.argv[1:]
threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
graph = args[args.index("--graph") + 1] if "--graph" in args else None
counts = [int(a) for i, a in enumerate(args)
          if not a.startswith("--") and (i == 0 or args[i - 1] not in ("--threads", "--graph"))]

from lram.bench.robots import DEFAULT_COUNTS, robots_at_hz, table  # noqa: E402

if graph is not None:
    graphs = {"graph": graph}
else:
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    from lram.bench.latency import BenchConfig, make_models
    from lram.export.onnx_export import export_onnx

    lram, _ = make_models("16M", BenchConfig(presets=("16M",)))  # the preset bench's perturbed random weights
    out = tempfile.mkdtemp()
    graphs = {"native": export_onnx(lram, out + "/16M_native.onnx", flavour="native")}
    for flavour in ("ort", "standard"):
        if f"--{flavour}" in args:
            graphs[flavour] = export_onnx(lram, f"{out}/16M_{flavour}.onnx", flavour=flavour)
section = robots_at_hz(graphs, 50.0, counts or DEFAULT_COUNTS, threads=threads, progress=print)
print(table(section))
