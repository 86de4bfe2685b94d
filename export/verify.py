"""Parity of an exported step graph with the PyTorch model it came from, proven over long runs.

Both sides are driven with the same inputs, step by step, each carrying its own recurrent state: PyTorch runs
the xlstm package's step() (three token calls per environment step, as the reference code does) in float64,
ONNX Runtime runs the exported fp32 graph. The float64 reference measures the graph's own error: two fp32
implementations differ by the sum of both errors, and on a trained model (logits up to ~20) PyTorch fp32 is
itself up to 1.9e-4 away from float64 (measured on the shipped pick-place policy over 8,000 steps, logits up
to 17.5: 1.3e-5 of the largest logit), so an absolute 1e-4 between two fp32 runs is below the noise floor.
The tolerance is |dlogit| <= atol + rtol * max|logit| of that robot's step (fp32 error scales with the
magnitudes flowing through the network, not with each logit), rtol = 5e-5, about 4x PyTorch fp32's own
worst. A differing argmax whose two bins the reference separates by less than that tolerance is a near-tie,
reported but not failed.
Several robots run side by side with staggered episode resets. Two phases:
- simulator: real observations from the task's simulator, episodes driven by the PyTorch policy's actions;
- adversarial: large rewards and returns, wide observations, and one long episode with no reset.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import onnxruntime as ort
import torch

from lram.model.action_head import argmax_classes, decode_dims, winners_to_actions
from lram.model.lram import LRAM
from lram.runtime.manifest import METADATA_KEY, Manifest

FP32_ATOL = 1e-4
FP32_RTOL = 5e-5


class VerifyError(ValueError):
    """The graph does not belong to the checkpoint, or cannot be driven."""


@dataclass
class Window:
    phase: str
    start: int
    steps: int
    max_abs_logit_diff: float
    worst_excess: float  # max |dlogit| / (atol + rtol |logit|); <= 1 passes
    action_agreement: float  # robot-steps whose every action dim matches (near-ties count as matching)
    near_ties: int


@dataclass
class VerifyReport:
    steps: int
    robots: int
    episodes: int
    max_abs_logit_diff: float
    worst_excess: float
    action_agreement: float
    near_ties: int
    atol: float
    rtol: float
    passed: bool
    windows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Side:
    """The two implementations behind one call: step(obs, rtg, prev_reward, first) -> (ref logits, ORT outputs)."""

    def __init__(self, model: LRAM, session: ort.InferenceSession, manifest: Manifest, robots: int):
        self.model = copy.deepcopy(model).double().eval()
        self.session, self.manifest = session, manifest
        self.torch_state = _to_double(self.model.init_state(robots))
        self.ort_state = {s.input: np.zeros((robots, *s.shape), np.float32) for s in manifest.state}
        self.outputs = [o.name for o in session.get_outputs()]

    def step(self, obs, rtg, prev_reward, first):
        with torch.no_grad():
            to64 = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
            ref_obs = torch.from_numpy(obs) if obs.dtype == np.uint8 else to64(obs)
            logits, self.torch_state = self.model.step(ref_obs, to64(rtg), to64(prev_reward), torch.from_numpy(first),
                                                       self.torch_state)
        feeds = {"obs": obs, "rtg": rtg[:, None], "prev_reward": prev_reward[:, None], "first": first, **self.ort_state}
        res = dict(zip(self.outputs, self.session.run(None, feeds)))
        self.ort_state = {k.replace("state_out.", "state_in.", 1): v for k, v in res.items() if k.startswith("state_out.")}
        return logits.numpy(), res


def _to_double(state: dict) -> dict:
    return {blk: {k: tuple(t.double() for t in v) if isinstance(v, tuple) else v.double() for k, v in parts.items()}
            for blk, parts in state.items()}


@dataclass
class _StepCheck:
    max_abs: float
    excess: float
    agree: np.ndarray  # [robots] bool
    ties: int


def compare_step(ref: np.ndarray, ort_logits: np.ndarray, ort_action: np.ndarray, task, atol: float, rtol: float):
    """One step's logits and decoded actions against the float64 reference."""
    diff = np.abs(ort_logits.astype(np.float64) - ref)
    allowed = atol + rtol * np.abs(ref).max(axis=(1, 2), keepdims=True)  # per robot-step
    lo, hi, dims = *argmax_classes(task), decode_dims(task)  # the classes the task's decode rule compares
    ref_l, ort_l = ref[:, :dims, lo:hi], ort_logits[:, :dims, lo:hi]
    rb, ob = ref_l.argmax(-1), ort_l.argmax(-1)  # [robots, dims]
    gap = np.take_along_axis(ref_l, rb[..., None], -1)[..., 0] - np.take_along_axis(ref_l, ob[..., None], -1)[..., 0]
    tol = 2 * allowed[:, :, 0]  # [robots, 1]: two logits each off by up to the allowance
    tie = (rb != ob) & (gap <= tol)
    agree = np.all((rb == ob) | tie, axis=-1)
    # the graph's own decoding of its argmax must be right too
    agree &= _decoded_matches(ob, ort_action, task)
    return _StepCheck(float(diff.max()), float((diff / allowed).max()), agree, int(tie.sum()))


def _decoded_matches(winners: np.ndarray, action: np.ndarray, task) -> np.ndarray:
    expected = winners_to_actions(torch.from_numpy(winners), task).numpy()
    if task.action_kind == "discrete":
        return action.reshape(-1) == expected
    span = np.asarray(task.action_high) - np.asarray(task.action_low)
    return np.all(np.abs(action - expected) <= 1e-4 * span, axis=-1)


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
           atol: float = FP32_ATOL, rtol: float = FP32_RTOL, window: int = 1000, progress: bool = False) -> VerifyReport:
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
    sources = []
    if env_id:
        try:
            sources.append(("simulator", steps // 2, _SimulatorFeed(env_id, model, robots, seed)))
        except Exception as e:  # a missing simulator must not hide the adversarial half
            notes.append(f"simulator phase skipped: {e}")
    else:
        notes.append("simulator phase skipped: the checkpoint names no environment")
    sources.append(("adversarial", steps - sum(s[1] for s in sources), _AdversarialFeed(model, robots, rng)))

    windows: list[Window] = []
    t0 = 0
    bar = _progress(steps, progress)
    for phase, n, feed in sources:
        checks = []
        for i in range(n):
            obs, rtg, prev_reward, first = feed.inputs()
            ref, res = side.step(obs, rtg, prev_reward, first)
            feed.advance(side.model.decode(torch.from_numpy(ref)).numpy())
            checks.append(compare_step(ref, res["logits"], res["action"], model.task, atol, rtol))
            if len(checks) == window or i == n - 1:
                windows.append(Window(phase, t0, len(checks), max(c.max_abs for c in checks),
                                      max(c.excess for c in checks),
                                      float(np.mean(np.concatenate([c.agree for c in checks]))),
                                      sum(c.ties for c in checks)))
                t0 += len(checks)
                checks = []
            bar.update(1)
        notes += feed.notes()
    bar.close()
    total = sum(w.steps for w in windows)
    agreement = sum(w.action_agreement * w.steps for w in windows) / max(total, 1)
    worst = max((w.worst_excess for w in windows), default=0.0)
    episodes = sum(getattr(f, "episodes", 0) for _, _, f in sources)
    return VerifyReport(steps=steps, robots=robots, episodes=episodes,
                        max_abs_logit_diff=max((w.max_abs_logit_diff for w in windows), default=0.0),
                        worst_excess=worst, action_agreement=agreement, near_ties=sum(w.near_ties for w in windows),
                        atol=atol, rtol=rtol, passed=bool(worst <= 1.0 and agreement == 1.0), windows=windows,
                        notes=notes)


def _hash(model: LRAM) -> str:
    from lram.model.config import config_hash

    return config_hash(model.config, model.task)


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
