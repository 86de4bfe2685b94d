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
