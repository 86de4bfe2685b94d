"""The model itself: recurrent step vs parallel forward (on perturbed weights), episode starts in a batch,
the discretised action head, and the size presets."""
from __future__ import annotations

import pytest
import torch

from lram.model.action_head import (
    IGNORE,
    ActionOutOfBounds,
    bins_to_actions,
    decode_logits,
    encode_actions,
)
from lram.model.config import N_BINS, N_DISCRETE, PRESETS, VOCAB, ConfigError, TaskSpec, preset
from lram.model.lram import LRAM

torch.set_num_threads(1)
PARITY_TOL = 1e-5


def run_steps(model: LRAM, obs, rtg, rewards, first: torch.Tensor, garbage_reward: float = 1234.5):
    """Drive ``model.step`` over [B, T] inputs. ``first`` [B, T] marks episode starts; the reward fed at a first
    step is garbage on purpose (it must be ignored). Returns logits [B, T, 8, 274]."""
    B, T = rtg.shape
    state = model.init_state(B)
    out = []
    for t in range(T):
        prev = rewards[:, t - 1] if t > 0 else torch.zeros(B)
        prev = torch.where(first[:, t], torch.full_like(prev, garbage_reward), prev)
        logits, state = model.step(obs[:, t], rtg[:, t], prev, first[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1)


# ---- step vs parallel -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kind", [("tiny", "state"), ("tiny-mlstm", "state"), ("tiny", "image")],
                         ids=["tiny[7:1]-state", "tiny-mlstm[1:0]-state", "tiny[7:1]-image64x64x3"])
def test_step_matches_parallel_forward(name, kind, model_factory, episode, state_task, image_task):
    task = state_task if kind == "state" else image_task
    model = model_factory(name, task, seed=11)
    B, T = 2, 10
    obs, rtg, rewards = episode(task, B, T, seed=5)
    if kind == "image":
        assert obs.dtype == torch.uint8 and obs.shape[2:] == (64, 64, 3)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    with torch.no_grad():
        parallel = model(obs, rtg, rewards)
    stepped = run_steps(model, obs, rtg, rewards, first)
    diff = (stepped - parallel).abs().max().item()
    print(f"{name} {kind}: max |step - parallel| = {diff:.2e} (logits up to {parallel.abs().max().item():.2f})")
    assert diff <= PARITY_TOL

    # Not vacuous: the logits move over time, and they depend on the history (a fresh one-step run differs).
    assert parallel.std(dim=1).max().item() > 1e-2
    with torch.no_grad():
        fresh = model(obs[:, -1:], rtg[:, -1:], rewards[:, -1:])[:, 0]
    assert (fresh - parallel[:, -1]).abs().max().item() > 1e-3


def test_step_does_not_modify_the_callers_state(tiny_state_model, episode):
    model = tiny_state_model
    obs, rtg, rewards = episode(model.task, 2, 3, seed=1)
    state = model.init_state(2)
    for t in range(2):
        _, state = model.step(obs[:, t], rtg[:, t], rewards[:, t], torch.tensor([t == 0, t == 0]), state)
    snapshot = {b: {k: tuple(x.clone() for x in v) if isinstance(v, tuple) else v.clone() for k, v in parts.items()}
                for b, parts in state.items()}
    model.step(obs[:, 2], rtg[:, 2], rewards[:, 1], torch.tensor([False, True]), state)
    for b, parts in state.items():
        for k, v in parts.items():
            for x, y in zip(v if isinstance(v, tuple) else (v,), snapshot[b][k] if isinstance(v, tuple) else (snapshot[b][k],)):
                assert torch.equal(x, y), f"step() modified {b}.{k} in place"


@pytest.mark.parametrize("name", ["tiny", "tiny-mlstm"])
def test_batch_rows_with_different_episode_starts(name, model_factory, episode, state_task):
    """Each row restarts at its own steps; every episode segment must match its own single-row parallel run."""
    model = model_factory(name, state_task, seed=2)
    B, T = 3, 9
    starts = {0: [0], 1: [0, 4], 2: [0, 2, 6]}
    obs, rtg, rewards = episode(state_task, B, T, seed=9)
    first = torch.zeros(B, T, dtype=torch.bool)
    for b, ss in starts.items():
        first[b, ss] = True
    stepped = run_steps(model, obs, rtg, rewards, first)
    worst = 0.0
    for b, ss in starts.items():
        for s, e in zip(ss, [*ss[1:], T]):
            with torch.no_grad():
                ref = model(obs[b:b + 1, s:e], rtg[b:b + 1, s:e], rewards[b:b + 1, s:e])[0]
            d = (stepped[b, s:e] - ref).abs().max().item()
            worst = max(worst, d)
            assert d <= PARITY_TOL, f"row {b}, episode [{s}, {e}): max diff {d:.2e}"
    print(f"{name}: worst segment diff {worst:.2e}")
    # the restart really cut the history: row 1 at t=4 differs from running on through the old episode
    with torch.no_grad():
        through = model(obs[1:2, :5], rtg[1:2, :5], rewards[1:2, :5])[0, 4]
    assert (through - stepped[1, 4]).abs().max().item() > 1e-3


def test_step_with_slstm_at_block_0(model_factory, episode, state_task):
    """A reference checkpoint may put sLSTM first; presets never do."""
    model = model_factory("tiny", state_task, seed=6, slstm_at=(0,))
    obs, rtg, rewards = episode(state_task, 1, 4, seed=6)
    first = torch.zeros(1, 4, dtype=torch.bool)
    first[:, 0] = True
    stepped = run_steps(model, obs, rtg, rewards, first)
    with torch.no_grad():
        assert (stepped - model(obs, rtg, rewards)).abs().max().item() <= PARITY_TOL


def test_parallel_forward_beyond_the_training_context(model_factory, episode, state_task):
    model = model_factory("tiny-mlstm", state_task, seed=8, context_timesteps=4)
    obs, rtg, rewards = episode(state_task, 1, 6, seed=8)
    first = torch.zeros(1, 6, dtype=torch.bool)
    first[:, 0] = True
    stepped = run_steps(model, obs, rtg, rewards, first)  # the recurrent form runs past C, as deployment does
    with torch.no_grad():
        assert (stepped - model(obs, rtg, rewards)).abs().max().item() <= PARITY_TOL


# ---- action head ------------------------------------------------------------------------------------------
def _continuous_task(low, high):
    return TaskSpec(obs_kind="state", obs_shape=(3,), action_kind="continuous", action_dim=len(low),
                    action_low=tuple(low), action_high=tuple(high))


def _one_hot_logits(tokens: torch.Tensor) -> torch.Tensor:
    """[..., 8] tokens (IGNORE for padded dims) -> [..., 8, 274] logits peaked at those tokens."""
    logits = torch.randn(*tokens.shape, VOCAB) * 0.01
    idx = tokens.clamp(min=0).unsqueeze(-1)
    return logits.scatter(-1, idx, 10.0)


@pytest.mark.parametrize("seed", range(4))
def test_continuous_round_trip_within_half_a_bin(seed):
    g = torch.Generator().manual_seed(seed)
    d = int(torch.randint(1, 9, (1,), generator=g))
    low = (torch.rand(d, generator=g) * -10).tolist()
    high = [lo + w for lo, w in zip(low, (0.05 + torch.rand(d, generator=g) * 20).tolist())]
    task = _continuous_task(low, high)
    lo_t, hi_t = torch.tensor(low), torch.tensor(high)
    actions = lo_t + torch.rand(64, d, generator=g) * (hi_t - lo_t)
    actions[0], actions[1] = lo_t, hi_t  # the bounds themselves are legal
    tokens = encode_actions(actions, task)
    assert tokens.shape == (64, 8)
    assert ((tokens[:, :d] >= N_DISCRETE) & (tokens[:, :d] < VOCAB)).all()
    assert (tokens[:, d:] == IGNORE).all()
    decoded = decode_logits(_one_hot_logits(tokens), task)
    assert decoded.shape == (64, d)
    half_bin = (hi_t - lo_t) / N_BINS / 2
    err = (decoded - actions).abs()
    assert (err <= half_bin * (1 + 1e-4) + 1e-6).all(), f"worst {(err / half_bin).max():.4f} half-bins"
    # the reference code's decoding (left bin edge) is within one bin, never above the action
    left = bins_to_actions(tokens[:, :d] - N_DISCRETE, TaskSpec(**{**task.to_dict(), "action_decode": "reference"}))
    assert (left <= actions + 1e-5).all() and ((actions - left) <= 2 * half_bin * (1 + 1e-4) + 1e-6).all()


def test_discrete_round_trip():
    task = TaskSpec(obs_kind="image", obs_shape=(64, 64, 3), action_kind="discrete", action_n=7)
    actions = torch.arange(7).repeat(3)
    tokens = encode_actions(actions, task)
    assert tokens.shape == (21, 8) and torch.equal(tokens[:, 0], actions) and (tokens[:, 1:] == IGNORE).all()
    assert torch.equal(decode_logits(_one_hot_logits(tokens), task), actions)
    # the argmax is restricted to the environment's own actions even when a foreign token scores higher
    logits = torch.zeros(1, 8, VOCAB)
    logits[0, 0, 3] = 1.0
    logits[0, 0, 12] = 5.0  # a valid Atari action, not one of this task's 7
    logits[0, 0, 40] = 9.0  # a continuous bin token
    assert decode_logits(logits, task).item() == 3


@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan"), float("inf")])
def test_continuous_out_of_bounds_raises(bad):
    task = _continuous_task([-1.0, 0.0], [1.0, 2.0])
    actions = torch.tensor([[0.0, 1.0], [bad, 1.0]])
    with pytest.raises(ActionOutOfBounds):
        encode_actions(actions, task)
    with pytest.raises(ActionOutOfBounds, match="dim 1"):
        encode_actions(torch.tensor([[0.0, 2.5]]), task)


@pytest.mark.parametrize("bad", [-1, 7])
def test_discrete_out_of_bounds_raises(bad):
    task = TaskSpec(obs_kind="image", obs_shape=(64, 64, 3), action_kind="discrete", action_n=7)
    with pytest.raises(ActionOutOfBounds):
        encode_actions(torch.tensor([0, bad]), task)


# ---- presets ----------------------------------------------------------------------------------------------
NOMINAL = {"16M": 16e6, "48M": 48e6, "110M": 110e6, "206M": 206e6}


def _meta_model(name: str) -> LRAM:
    task = TaskSpec(obs_kind="state", obs_shape=(39,), action_kind="discrete", action_n=4)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return LRAM(preset(name), task)


def test_preset_parameter_counts():
    rows = []
    for base, nominal in NOMINAL.items():
        for name in (base, f"{base}-mlstm"):
            model = _meta_model(name)
            total = model.parameter_count()
            backbone = sum(p.numel() for p in model.encoder.parameters())
            rows.append((name, model.config.flavour, total, backbone, total / nominal - 1))
    print("\npreset        flavour   total         backbone      vs nominal")
    for name, flav, total, backbone, rel in rows:
        print(f"{name:<13} {flav:<9} {total:>12,}  {backbone:>12,}  {rel:+.1%}")
    for name, _, total, _, rel in rows:
        assert abs(rel) <= 0.05, f"{name}: {total:,} parameters, {rel:+.1%} from its nominal size"
    backbone_16m = next(r[3] for r in rows if r[0] == "16M")
    assert abs(backbone_16m / 12.9e6 - 1) <= 0.02, f"16M backbone {backbone_16m:,} vs the spec's measured 12.9M"


def test_preset_shapes_follow_the_spec_table():
    assert preset("16M").slstm_at == (1,) and preset("48M").slstm_at == (1, 3)
    assert preset("110M").slstm_at == (1, 3) and preset("206M").slstm_at == (1, 3, 5)
    assert [(preset(n).num_blocks, preset(n).embedding_dim) for n in NOMINAL] == [(8, 512), (12, 768), (16, 1024), (20, 1280)]
    assert all(preset(f"{n}-mlstm").slstm_at == () for n in NOMINAL)
    assert preset("16M").flavour == "[7:1]" and preset("16M-mlstm").flavour == "[1:0]"


@pytest.mark.parametrize("bad", ["17M", "16m", "16M-slstm", "", "tiny-mlstm-x"])
def test_unknown_preset_names_the_choices(bad):
    with pytest.raises(ConfigError) as err:
        preset(bad)
    msg = str(err.value)
    assert repr(bad) in msg
    for name in PRESETS:
        assert name in msg
