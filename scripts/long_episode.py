"""One long episode through the runtime: does the recurrent state stay finite and bounded?

Usage: .venv/bin/python scripts/long_episode.py GRAPH.onnx [STEPS]   (default 200,000 steps, 2 robots)

Observations are drawn inside the manifest's observation range (outside it the runtime refuses the step and
the state does not advance), returns and rewards are held at large values, and the episode is never reset.
"""
import sys
import time

import numpy as np

from lram.runtime.policy import Policy

path, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
p = Policy.load(path, n_robots=2, backend="ort-cpu")
rng = np.random.default_rng(0)
obs_spec = p.manifest.observation
lo, hi = np.asarray(obs_spec["low"], np.float32), np.asarray(obs_spec["high"], np.float32)
rtg, reward = np.array([[4500.0], [-9000.0]], np.float32), np.array([[1.0], [50.0]], np.float32)
t0, refused = time.time(), 0
for t in range(steps):
    obs = (lo + rng.random((2, lo.size)) * (hi - lo)).astype(np.float32)
    refused += int(not p.step_detailed(obs, rtg=rtg, prev_reward=reward, first=np.array([t == 0] * 2)).ok.all())
    if t % 50_000 == 0 or t == steps - 1:
        finite = all(np.isfinite(v).all() for v in p.slots.state.values())
        peak = max(float(np.abs(v).max()) for v in p.slots.state.values())
        print(f"step {t}: state finite {finite}, max |state| {peak:.3g}, refused steps {refused}, "
              f"{time.time() - t0:.0f} s", flush=True)
