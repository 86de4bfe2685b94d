"""Parity of an exported step graph with the PyTorch model it came from, proven over long runs.

Both sides are driven with the same inputs, step by step, each carrying its own recurrent state: PyTorch runs
the xlstm package's step() (three token calls per environment step, as the reference code does), ONNX Runtime
runs the exported graph. Several robots run side by side with staggered episode resets. Two phases:
- simulator: real observations from the task's simulator, episodes driven by the PyTorch policy's actions;
- adversarial: large rewards and returns, wide observations, and one long episode with no reset.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnxruntime as ort
import torch

from lram.model.lram import LRAM
from lram.runtime.manifest import METADATA_KEY, Manifest

FP32_LOGIT_TOL = 1e-4


class VerifyError(ValueError):
    """The graph does not belong to the checkpoint, or cannot be driven."""


@dataclass
class Window:
    phase: str
    start: int
    steps: int
    max_abs_logit_diff: float
    action_agreement: float


@dataclass
class VerifyReport:
    steps: int
    robots: int
    episodes: int
    max_abs_logit_diff: float
    action_agreement: float
    tolerance: float
    passed: bool
    windows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Side:
    """The two implementations behind one call: step(obs, rtg, prev_reward, first) -> (logits, actions)."""

    def __init__(self, model: LRAM, session: ort.InferenceSession, manifest: Manifest, robots: int):
        self.model, self.session, self.manifest = model, session, manifest
        self.torch_state = model.init_state(robots)
        self.ort_state = {s.input: np.zeros((robots, *s.shape), np.float32) for s in manifest.state}
        self.outputs = [o.name for o in session.get_outputs()]

    def step(self, obs, rtg, prev_reward, first):
        with torch.no_grad():
            logits, self.torch_state = self.model.step(
                torch.from_numpy(obs), torch.from_numpy(rtg), torch.from_numpy(prev_reward),
                torch.from_numpy(first), self.torch_state)
            actions = self.model.decode(logits).numpy()
        feeds = {"obs": obs, "rtg": rtg[:, None], "prev_reward": prev_reward[:, None], "first": first, **self.ort_state}
        res = dict(zip(self.outputs, self.session.run(None, feeds)))
        self.ort_state = {k.replace("state_out.", "state_in.", 1): v for k, v in res.items() if k.startswith("state_out.")}
        return logits.numpy(), actions, res["logits"], res["action"]


def load_session(onnx_path: str, threads: int = 1) -> tuple[ort.InferenceSession, Manifest]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for unreadable files
        raise VerifyError(f"{onnx_path} is not a loadable ONNX graph: {e}") from None
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise VerifyError(f"{onnx_path} carries no lram manifest: it was not written by lram export")
    return session, Manifest.from_json(meta[METADATA_KEY])


def verify(onnx_path: str, model: LRAM, steps: int = 10_000, robots: int = 4, seed: int = 0, env_id: str | None = None,
           tolerance: float = FP32_LOGIT_TOL, window: int = 1000, progress: bool = False) -> VerifyReport:
    session, manifest = load_session(onnx_path)
    if "logits" not in {o.name for o in session.get_outputs()}:
        raise VerifyError(f"{onnx_path} was exported without the logits output; re-export with logits to verify")
    if manifest.model.get("config_hash") and manifest.model["config_hash"] != _hash(model):
        raise VerifyError(f"{onnx_path} was exported from another model (config hash {manifest.model['config_hash']} "
                          f"vs checkpoint {_hash(model)})")
    model = model.eval()
    rng = np.random.default_rng(seed)
    side = _Side(model, session, manifest, robots)
    env_id = env_id if env_id is not None else (model.task.name or None)
    notes: list[str] = []
    sim_steps = steps // 2
    sources = []
    if env_id:
        try:
            sources.append(("simulator", sim_steps, _SimulatorFeed(env_id, model, robots, seed)))
        except Exception as e:  # a missing simulator must not hide the adversarial half
            notes.append(f"simulator phase skipped: {e}")
    else:
        notes.append("simulator phase skipped: the checkpoint names no environment")
    adv = steps - sum(s[1] for s in sources)
    sources.append(("adversarial", adv, _AdversarialFeed(model, robots, rng)))

    windows: list[Window] = []
    total_diff, agree, count, t0 = 0.0, 0, 0, 0
    bar = _progress(steps, progress)
    for phase, n, feed in sources:
        diffs, agreements = [], []
        for i in range(n):
            obs, rtg, prev_reward, first = feed.inputs()
            lt, at, lo, ao = side.step(obs, rtg, prev_reward, first)
            feed.advance(at)
            d = float(np.abs(lt - lo).max())
            same = _same_actions(at, ao, model)
            diffs.append(d)
            agreements.append(same)
            if len(diffs) == window or i == n - 1:
                windows.append(Window(phase, t0, len(diffs), max(diffs), float(np.mean(agreements))))
                t0 += len(diffs)
                total_diff = max(total_diff, max(diffs))
                agree += int(np.sum(agreements))
                count += int(np.size(agreements))
                diffs, agreements = [], []
            bar.update(1)
        notes += feed.notes()
    bar.close()
    rate = agree / max(count, 1)
    episodes = sum(getattr(f, "episodes", 0) for _, _, f in sources)
    return VerifyReport(steps=steps, robots=robots, episodes=episodes, max_abs_logit_diff=total_diff,
                        action_agreement=rate, tolerance=tolerance,
                        passed=bool(total_diff <= tolerance and rate == 1.0), windows=windows, notes=notes)


def _hash(model: LRAM) -> str:
    from lram.model.config import config_hash

    return config_hash(model.config, model.task)


def _same_actions(a: np.ndarray, b: np.ndarray, model: LRAM) -> np.ndarray:
    if model.task.action_kind == "discrete":
        return a == b
    # the graph decodes with float32 affine math: allow rounding, never a different bin
    step = (np.asarray(model.task.action_high) - np.asarray(model.task.action_low)) / 256
    return np.all(np.abs(a - b) < 0.25 * step, axis=-1)


def _progress(total: int, enabled: bool):
    if not enabled:
        class _Null:
            def update(self, n): pass
            def close(self): pass
        return _Null()
    from tqdm import tqdm

    return tqdm(total=total, desc="verify", unit="step")


class _SimulatorFeed:
    """Robots in the real simulator, acting with the PyTorch policy's actions."""

    def __init__(self, env_id: str, model: LRAM, robots: int, seed: int):
        from lram.model.envs import make_env

        self.envs = [make_env(env_id, seed=seed + 10_000 + r)[0] for r in range(robots)]
        self.task = model.task
        self.target = float(model.task.target_return or 0.0)
        self.next_seed = seed + 20_000
        n = len(self.envs)
        self.obs = [None] * n
        self.rtg = np.zeros(n, np.float32)
        self.prev_reward = np.zeros(n, np.float32)
        self.first = np.ones(n, bool)
        self.episodes = 0
        for r in range(n):
            self._reset(r)

    def _reset(self, r: int):
        self.obs[r] = np.asarray(self.envs[r].reset(self.next_seed), np.float32)
        self.next_seed += 1
        self.rtg[r] = self.target
        self.prev_reward[r] = 0.0
        self.first[r] = True
        self.episodes += 1

    def inputs(self):
        return np.stack(self.obs).astype(np.float32), self.rtg.copy(), self.prev_reward.copy(), self.first.copy()

    def advance(self, actions):
        self.first[:] = False
        for r, env in enumerate(self.envs):
            res = env.step(actions[r])
            self.rtg[r] -= res.reward
            self.prev_reward[r] = res.reward
            self.obs[r] = res.obs
            if res.done:
                self._reset(r)

    def notes(self):
        for env in self.envs:
            env.close()
        return [f"simulator: {self.episodes} episodes"]


class _AdversarialFeed:
    """Large rewards and returns, wide observations, staggered resets, and robot 0 never reset (a long episode)."""

    def __init__(self, model: LRAM, robots: int, rng: np.random.Generator):
        self.task, self.rng, self.n = model.task, rng, robots
        self.first = np.ones(robots, bool)
        self.episodes = robots
        self.t = 0

    def inputs(self):
        task, rng, n = self.task, self.rng, self.n
        if task.obs_kind == "image":
            obs = rng.integers(0, 256, size=(n, *task.obs_shape), dtype=np.uint8)
        else:
            lo = np.asarray(task.obs_low if task.obs_low else [-1.0] * task.obs_shape[0], np.float32)
            hi = np.asarray(task.obs_high if task.obs_high else [1.0] * task.obs_shape[0], np.float32)
            span = hi - lo
            obs = (lo - span + rng.random((n, task.obs_shape[0])) * 3 * span).astype(np.float32)  # 3x the range
        scale = task.reward_scale
        rtg = (rng.standard_normal(n) * 50 * scale).astype(np.float32)
        prev_reward = (rng.standard_normal(n) * 5 * scale).astype(np.float32)
        return obs, rtg, prev_reward, self.first.copy()

    def advance(self, actions):
        self.t += 1
        self.first = self.rng.random(self.n) < 1 / 300
        self.first[0] = False  # robot 0: one episode for the whole phase
        self.episodes += int(self.first.sum())

    def notes(self):
        return [f"adversarial: robot 0 ran one episode of {self.t} steps; rewards ~ 5 x scale, returns ~ 50 x scale"]
