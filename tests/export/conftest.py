import pytest
import torch

from lram.model.config import TaskSpec, preset
from lram.model.lram import LRAM

torch.set_num_threads(1)

STATE_TASK = TaskSpec(obs_kind="state", obs_shape=(11,), action_kind="continuous", action_dim=3,
                      action_low=(-1.0, -2.0, 0.0), action_high=(1.0, 2.0, 0.5), reward_scale=200.0,
                      target_return=400.0, obs_low=(-3.0,) * 11, obs_high=(3.0,) * 11)
IMAGE_TASK = TaskSpec(obs_kind="image", obs_shape=(64, 64, 3), action_kind="discrete", action_n=6, reward_scale=20.0,
                      target_return=20.0)


def perturbed(name: str, task: TaskSpec, seed: int = 0, **overrides) -> LRAM:
    """The stock xlstm init zeroes gate and recurrent weights: parity on it would be vacuous."""
    torch.manual_seed(seed)
    model = LRAM(preset(name, encoders=(task.obs_kind,), **overrides), task).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture
def state_model():
    return perturbed("tiny", STATE_TASK)


@pytest.fixture
def make():
    """make(name, task_kind, seed) -> a perturbed model; task_kind "state" or "image"."""
    return lambda name, kind="state", seed=0, **kw: perturbed(name, STATE_TASK if kind == "state" else IMAGE_TASK, seed, **kw)


def with_forget_bias(model: LRAM, fbias):
    """``model`` with every mLSTM forget-gate bias set to ``fbias`` (None: unchanged): -40 makes the stabiliser
    and the reset fold do all the work."""
    if fbias is not None:
        with torch.no_grad():
            for block in model.encoder.layers.blocks:
                if hasattr(block.xlstm, "mlstm_cell"):
                    block.xlstm.mlstm_cell.fgate.bias.fill_(fbias)
    return model


def drive(path, manifest, steps: int, B: int, seed: int):
    """Step the graph at ``path`` on ONNX Runtime's CPU (any flavour, through the runtime's backend) with random
    inputs and episode starts in some rows; returns (logits [steps, B, ...], the last state). Checks on the way
    that the backend neither keeps nor modifies its feeds."""
    import numpy as np

    from lram.runtime.backends import make_backend

    backend = make_backend(path, "ort-cpu")
    rng = np.random.default_rng(seed)
    state = {s.input: np.zeros((B, *s.shape), s.dtype) for s in manifest.state}
    logits = []
    for t in range(steps):
        first = np.array([t == 0, t % 9 == 0, t % 14 == 5, t == 0][:B])
        feeds = {"obs": rng.standard_normal((B, 11)).astype(np.float32),
                 "rtg": (300 * rng.standard_normal((B, 1))).astype(np.float32),
                 "prev_reward": rng.standard_normal((B, 1)).astype(np.float32), "first": first, **state}
        kept = {k: v.copy() for k, v in feeds.items()}
        res = backend.run(feeds)
        for k in kept:
            np.testing.assert_array_equal(feeds[k], kept[k])
        state = {s.input: res[s.output] for s in manifest.state}
        logits.append(res["logits"])
    return np.stack(logits), state
