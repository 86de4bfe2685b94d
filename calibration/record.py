"""Calibration data: the step graph's inputs, recurrent state included, recorded from closed-loop rollouts.

The FP32 graph drives the simulator through lram.verify's GraphRunner (ONNX Runtime; the return-to-go is
target - rewards so far), and the exact feeds of the steps chosen for keeping are copied. Steps are chosen per episode by reservoir sampling, so every episode position
(the first step with its zero state, the middle, the long tail) is equally likely to be kept, with a bounded
memory (at 16M one sample holds 8.4 MB of state).

On disk: one ``.npz`` with one array per graph input ([N, ...], the batch axis holds the samples), the
episode position / index / seed of every sample, and a JSON manifest (format, the model's config_hash, env,
seeds, sample count). ``load_calibration`` refuses data of another model, too few samples, or non-finite
values, each with a message that says what to do.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lram.runtime.manifest import Manifest

FORMAT = "lram-calibration"
FORMAT_VERSION = 1
MANIFEST_KEY = "__manifest__"
CALIB_SEED0 = 20_000  # data seeds are 0..N-1, evaluation 10_000+ (model.evaluate); calibration 20_000+
HELDOUT_SEED0 = 30_000  # accuracy checks run on seeds never used for calibration
MIN_SAMPLES = 32


class CalibrationDataError(ValueError):
    """The calibration data does not fit the model, is too small, or holds non-finite values."""


@dataclass
class CalibrationSet:
    inputs: dict  # graph input name -> [N, ...] array
    positions: np.ndarray  # [N] step index within its episode
    episodes: np.ndarray  # [N] episode index
    seeds: np.ndarray  # [N] the episode's reset seed
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.positions))

    def batches(self, batch: int = 32):
        """Feeds dicts of up to ``batch`` samples (the graph's batch axis is dynamic)."""
        n = len(self)
        for a in range(0, n, batch):
            yield {k: v[a:a + batch] for k, v in self.inputs.items()}

    def sample(self, i: int) -> dict:
        return {k: v[i:i + 1] for k, v in self.inputs.items()}


def _check_env_fits(manifest: Manifest, task, env_id: str) -> None:
    obs = list(manifest.observation.get("shape", []))
    act = manifest.action
    if obs != list(task.obs_shape) or (act.get("kind") == "continuous" and act["shape"] != [task.action_dim]):
        raise CalibrationDataError(f"{env_id} observes {list(task.obs_shape)} and acts in {task.action_dim} dims; the "
                                   f"model expects {obs} / {act.get('shape', act.get('n'))}")


def record(model_path: str | Path, env_id: str | None = None, episodes: int = 8, samples: int = 256,
           seed0: int = CALIB_SEED0, target_return: float | None = None, progress: bool = False,
           max_steps: int | None = None) -> CalibrationSet:
    """Run ``episodes`` closed-loop episodes of the graph at ``model_path`` in ``env_id`` (default: the task
    name in its manifest) and keep about ``samples`` steps, spread over the episodes and their positions."""
    from lram.model.envs import make_env
    from lram.verify.runners import GraphRunner

    if episodes < 1 or samples < 1:
        raise ValueError("episodes and samples must be positive")
    runner = GraphRunner(model_path, "ort-cpu", threads=1)
    manifest = runner.manifest
    env_id = env_id or manifest.model.get("task", {}).get("name") or None
    if not env_id:
        raise CalibrationDataError("the model's manifest names no environment: pass env_id (e.g. metaworld:pick-place-v3)")
    target = target_return if target_return is not None else manifest.target_return
    if target is None:
        raise CalibrationDataError("the model has no target_return in its manifest: pass target_return")
    env, task = make_env(env_id)
    _check_env_fits(manifest, task, env_id)
    per_ep = max(1, -(-samples // episodes))
    rng = np.random.default_rng(seed0)
    kept, pos, epi, sds = [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=episodes, desc=f"record {env_id}", unit="ep")
    t0, steps = time.time(), 0
    try:
        for e in range(episodes):
            seed = seed0 + e
            obs = env.reset(seed)
            runner.reset(1)
            reservoir, reward, ret, t = [], 0.0, 0.0, 0
            while True:
                # reservoir sampling (Algorithm R): step t replaces a kept one with probability per_ep / (t + 1)
                slot = t if t < per_ep else int(rng.integers(0, t + 1))
                inputs = (obs[None].astype(np.float32), [target - ret], [reward], [t == 0])
                if slot < per_ep:
                    item = ({k: np.array(v, copy=True) for k, v in runner.feeds(*inputs).items()}, t)
                    if t < per_ep:
                        reservoir.append(item)
                    else:
                        reservoir[slot] = item
                out = runner.step(*inputs)
                r = env.step(out.action[0])
                obs, reward, ret, t = r.obs, r.reward, ret + r.reward, t + 1
                steps += 1
                if r.done or (max_steps is not None and t >= max_steps):
                    break
            for feeds, p in sorted(reservoir, key=lambda x: x[1]):
                kept.append(feeds)
                pos.append(p)
                epi.append(e)
                sds.append(seed)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(samples=len(kept))
    finally:
        if bar is not None:
            bar.close()
        env.close()
        runner.close()
    names = [t.name for t in manifest.inputs]
    inputs = {n: np.concatenate([k[n] for k in kept], axis=0) for n in names}
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "config_hash": manifest.model.get("config_hash"), "precision": manifest.precision,
        "model": Path(model_path).name, "env": env_id, "episodes": episodes,
        "seeds": [seed0, seed0 + episodes - 1], "samples": len(kept), "samples_per_episode": per_ep,
        "env_steps": steps, "target_return": target,
        "inputs": {n: [list(inputs[n].shape[1:]), str(inputs[n].dtype)] for n in names},
        "seconds": round(time.time() - t0, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    cs = CalibrationSet(inputs, np.asarray(pos, np.int64), np.asarray(epi, np.int64), np.asarray(sds, np.int64), meta)
    check_finite(cs)
    return cs


def save_calibration(cs: CalibrationSet, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise CalibrationDataError(f"calibration data is written as .npz, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"input/{k}": v for k, v in cs.inputs.items()}
    arrays.update(positions=cs.positions, episodes=cs.episodes, seeds=cs.seeds)
    arrays[MANIFEST_KEY] = np.array(json.dumps(cs.meta, sort_keys=True))
    tmp = path.with_name("." + path.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # uncompressed: recurrent state barely compresses and loading stays fast
    tmp.replace(path)
    return path


def check_finite(cs: CalibrationSet) -> None:
    for name, arr in cs.inputs.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
            i = int(bad[0])
            raise CalibrationDataError(
                f"calibration data holds non-finite values in '{name}' ({len(bad)} of {len(arr)} samples, first at "
                f"sample {i}: episode {int(cs.episodes[i])}, position {int(cs.positions[i])}); the FP32 model "
                "produced NaN/inf in closed loop: fix the model before calibrating")


def load_calibration(path: str | Path, manifest: Manifest | None = None, min_samples: int = MIN_SAMPLES) -> CalibrationSet:
    """Read calibration data; with ``manifest``, check that it was recorded with this model."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CalibrationDataError(f"{path}: not readable calibration data ({e})") from None
    with z:
        if MANIFEST_KEY not in z.files:
            raise CalibrationDataError(f"{path}: no calibration manifest inside (not written by lram calibration)")
        meta = json.loads(str(z[MANIFEST_KEY]))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise CalibrationDataError(f"{path}: format {meta.get('format')!r} v{meta.get('format_version')}, "
                                       f"expected {FORMAT!r} v{FORMAT_VERSION}")
        inputs = {k[len("input/"):]: z[k] for k in z.files if k.startswith("input/")}
        cs = CalibrationSet(inputs, z["positions"], z["episodes"], z["seeds"], meta)
    if manifest is not None:
        want = manifest.model.get("config_hash")
        have = meta.get("config_hash")
        if want != have:
            raise CalibrationDataError(
                f"{path} was recorded with another model (config_hash {have}, this graph has {want}): record "
                "calibration data with this graph (lram calibrate records it when no --data is given)")
        for spec in manifest.inputs:
            arr = inputs.get(spec.name)
            if arr is None:
                raise CalibrationDataError(f"{path} has no recording of graph input '{spec.name}'")
            if list(arr.shape[1:]) != list(spec.shape[1:]) or str(arr.dtype) != spec.dtype:
                raise CalibrationDataError(f"{path}: '{spec.name}' recorded as {list(arr.shape[1:])} {arr.dtype}, the graph "
                                           f"takes {spec.shape[1:]} {spec.dtype}")
    if len(cs) < min_samples:
        raise CalibrationDataError(f"{path} holds {len(cs)} samples; at least {min_samples} are needed for stable "
                                   "activation ranges (record more episodes or samples)")
    check_finite(cs)
    return cs
