"""The task registry (no simulator import), the Hydra config's say over a task, and the two action decodes."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from lram.model.action_head import decode_logits
from lram.model.config import N_BINS, N_DISCRETE, VOCAB, ConfigError, TaskSpec
from lram.model.hydra_task import HydraTaskError, reference_task
from lram.model.tasks import TASKS, TaskError, lookup, task_spec


# ---- registry -----------------------------------------------------------------------------------------------
def test_every_domain_is_known_with_v2_and_v3_metaworld_names():
    domains = {t.domain for t in TASKS.values()}
    assert {"metaworld", "dmcontrol", "atari", "procgen", "composuite", "mimicgen"} <= domains
    v2, v3 = lookup("metaworld:reach-v2"), lookup("metaworld:reach-v3")
    assert v2.obs_shape == v3.obs_shape == (39,) and v2.action_size == 4 and v2.reward_scale == 200.0
    assert v2.target_return == v3.target_return and v2.target_return > 0
    assert v2.simulator is None and v3.simulator == "metaworld:reach-v3"
    atari = task_spec("atari:BreakoutNoFrameskip-v4", "reference")
    assert (atari.obs_kind, atari.obs_shape, atari.action_kind, atari.action_n, atari.reward_scale) == \
        ("image", (64, 64, 1), "discrete", 4, 20.0)
    procgen = task_spec("procgen:bigfish")
    assert (procgen.obs_shape, procgen.action_n, procgen.reward_scale) == ((64, 64, 3), 15, 1.0)
    cheetah = task_spec("dmcontrol:cheetah-run", "reference")
    assert (cheetah.obs_shape, cheetah.action_dim, cheetah.reward_scale, cheetah.action_decode) == ((17,), 6, 100.0, "reference")
    assert task_spec("composuite:IIWA_Box_None_PickPlace").action_dim == 8
    assert len([t for t in TASKS if t.startswith("composuite:")]) == 256


def test_every_registry_task_builds_a_valid_spec():
    for info in TASKS.values():
        spec = info.spec(obs_dim=None if info.obs_shape else 20)
        assert spec.name == info.id


def test_registry_imports_no_simulator():
    code = ("import sys, lram.model.tasks as t, lram.model.hydra_task; t.task_spec('atari:PongNoFrameskip-v4'); "
            "bad = [m for m in ('gymnasium', 'metaworld', 'mujoco', 'torch', 'ale_py', 'procgen') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("task_id,words", [
    ("metaworld:reach-v22", ["unknown metaworld task", "did you mean", "metaworld:reach-v2"]),
    ("metaworld:reech-v2", ["did you mean", "metaworld:reach-v2"]),
    ("reach-v2", ["DOMAIN:TASK", "did you mean metaworld:reach-v2"]),
    ("robosuite:lift", ["unknown domain 'robosuite'"]),
    ("atari:Breakout", ["unknown atari task", "atari:BreakoutNoFrameskip-v4"]),
])
def test_unknown_tasks_are_one_line_with_a_suggestion(task_id, words):
    with pytest.raises(TaskError) as err:
        lookup(task_id)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_mimicgen_needs_an_observation_size():
    with pytest.raises(TaskError, match="--obs-dim"):
        task_spec("mimicgen:stack_d0")
    assert task_spec("mimicgen:stack_d0", obs_dim=37).obs_shape == (37,)
    with pytest.raises(TaskError, match="not 12"):
        task_spec("metaworld:reach-v2", obs_dim=12)


# ---- the Hydra config's say ---------------------------------------------------------------------------------
def test_hydra_values_win_over_the_registry_and_are_named():
    cfg = {"env_params": {"envid": ["reach-v2", "push-v2"], "reward_scale": {"mt50": 150, "atari": 20},
                          "target_return": {"reach-v2": 1234.5}}}
    spec, notes = reference_task("metaworld:reach-v2", cfg)
    assert spec.reward_scale == 150.0 and spec.target_return == 1234.5 and spec.action_decode == "reference"
    assert any("env_params.reward_scale" in n and "Hydra config wins" in n for n in notes)


def test_hydra_disagreements_are_errors():
    with pytest.raises(HydraTaskError, match="not among the tasks.*reach-v2"):
        reference_task("metaworld:push-v2", {"env_params": {"envid": ["reach-v2"]}})
    with pytest.raises(HydraTaskError, match="different reward scales"):
        reference_task("metaworld:reach-v2", {"a": {"reward_scale": 200}, "b": {"rew_scale": 100}})


# ---- decoding -----------------------------------------------------------------------------------------------
def _reference_rule(logits: np.ndarray, d: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The reference code's rule as the issue states it, on [-1, 1], then mapped to the task's bounds."""
    token = np.maximum(logits[..., :d, :].argmax(-1) - 18, 0)
    value = token * (2 / 256) - 1
    return low + (value + 1) / 2 * (high - low)


def _task(decode, d=4, low=-1.0, high=1.0):
    return TaskSpec(obs_kind="state", obs_shape=(5,), action_kind="continuous", action_dim=d,
                    action_low=(low,) * d, action_high=(high,) * d, action_decode=decode)


def test_a_winning_discrete_token_decodes_to_the_low_bound_under_the_reference_rule():
    logits = torch.zeros(1, 8, VOCAB)
    logits[0, :, N_DISCRETE + 200] = 5.0  # every dim's best bin is 200 ...
    logits[0, 1, 3] = 9.0  # ... but dim 1's overall winner is discrete token 3
    ref = decode_logits(logits, _task("reference"))[0]
    centre = decode_logits(logits, _task("bin_center"))[0]
    assert ref[1].item() == -1.0
    assert ref[0].item() == pytest.approx(200 * 2 / 256 - 1, abs=0)  # the left edge of bin 200, exactly
    assert centre[1].item() == pytest.approx((200.5) * 2 / 256 - 1, abs=1e-7)  # bin_center ignores the discrete token
    np.testing.assert_array_equal(ref.numpy(), _reference_rule(logits.numpy(), 4, -1.0, 1.0)[0].astype(np.float32))


def test_tied_bins_go_to_the_first_under_both_rules():
    logits = torch.zeros(1, 8, VOCAB)
    logits[0, :, N_DISCRETE + 7] = 4.0
    logits[0, :, N_DISCRETE + 90] = 4.0  # a tie: the first (bin 7) wins, as numpy and ONNX ArgMax pick it
    assert decode_logits(logits, _task("reference"))[0, 0].item() == 7 * 2 / 256 - 1
    assert decode_logits(logits, _task("bin_center"))[0, 0].item() == pytest.approx(7.5 * 2 / 256 - 1, abs=1e-7)
    logits[0, 2, 5] = 4.0  # a discrete token tied with the bins comes first too: reference gives the low bound
    assert decode_logits(logits, _task("reference"))[0, 2].item() == -1.0


def test_reference_rule_on_random_logits_and_other_bounds():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 8, VOCAB, generator=g) * 3
    for low, high in ((-1.0, 1.0), (-2.0, 0.5)):
        got = decode_logits(logits, _task("reference", 6, low, high)).numpy()
        want = _reference_rule(logits.numpy(), 6, np.float32(low), np.float32(high))
        np.testing.assert_allclose(got, want, atol=1e-6)
    centre = decode_logits(logits, _task("bin_center", 6)).numpy()
    assert (np.abs(centre - _reference_rule(logits.numpy(), 6, -1.0, 1.0)) > 1 / N_BINS * 0.9).any()


def test_discrete_decode_is_the_same_under_both_rules():
    logits = torch.randn(50, 8, VOCAB, generator=torch.Generator().manual_seed(1))
    a = TaskSpec(obs_kind="image", obs_shape=(64, 64, 1), action_kind="discrete", action_n=6, action_decode="reference")
    b = TaskSpec(**{**a.to_dict(), "action_decode": "bin_center"})
    assert torch.equal(decode_logits(logits, a), decode_logits(logits, b))
    assert torch.equal(decode_logits(logits, a), logits[:, 0, :6].argmax(-1))


def test_left_edge_is_gone():
    with pytest.raises(ConfigError, match="reference, bin_center"):
        _task("left_edge")


# ---- the registry against the simulators, where they are installed (not in CI: no simulator is a dependency) ----
def test_atari_action_sets_match_ale():
    ale_py = pytest.importorskip("ale_py")
    import re

    from ale_py import roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    for info in (t for t in TASKS.values() if t.domain == "atari"):
        game = info.name.removesuffix("NoFrameskip-v4")
        ale.loadROM(roms.get_rom_path(re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()))
        assert len(ale.getMinimalActionSet()) == info.action_size, info.id


def test_dmcontrol_spaces_match_dm_control():
    suite = pytest.importorskip("dm_control.suite")
    for info in (t for t in TASKS.values() if t.domain == "dmcontrol"):
        env = suite.load(*info.name.split("-", 1))
        obs = sum(int(np.prod(s.shape)) for s in env.observation_spec().values())
        spec = env.action_spec()
        assert (obs, spec.shape[0], spec.minimum.min(), spec.maximum.max()) == \
            (info.obs_shape[0], info.action_size, info.action_low, info.action_high), info.id
