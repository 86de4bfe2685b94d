"""Episodes on disk, behaviour cloning and closed-loop evaluation (fast: Pendulum + the tiny preset)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lram.model.checkpoint import load_checkpoint
from lram.model.episodes import (
    Episode, EpisodeError, WindowDataset, collect, load_episode, load_episodes, returns_to_go, save_episode,
)
from lram.model.evaluate import EvaluationError, evaluate
from lram.model.train import TrainConfig, lr_at, train

ENV = "gym:Pendulum-v1"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("pendulum_data")
    summary = collect(ENV, 4, out, seed0=0)
    return out, summary


def test_returns_to_go():
    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0])


def test_episode_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ep = Episode(rng.normal(size=(7, 39)).astype(np.float32), rng.uniform(-1, 1, (7, 4)).astype(np.float32),
                 rng.normal(size=7).astype(np.float32), np.array([0] * 6 + [1], bool), True, 42)
    back = load_episode(save_episode(tmp_path, ep))
    for f in ("states", "actions", "rewards", "dones"):
        np.testing.assert_array_equal(getattr(back, f), getattr(ep, f))
    assert back.success is True and back.seed == 42 and len(back) == 7


def test_foreign_and_missing_folders(tmp_path):
    with pytest.raises(EpisodeError, match="does not exist"):
        load_episodes(tmp_path / "nope")
    with pytest.raises(EpisodeError, match="not an episode folder"):
        load_episodes(tmp_path)
    (tmp_path / "ep_000001.npz").write_text("not a zip")
    with pytest.raises(EpisodeError, match="not an episode file"):
        load_episode(tmp_path / "ep_000001.npz")


def test_collect_writes_clipped_deterministic_episodes(pendulum_data, tmp_path):
    out, summary = pendulum_data
    eps, meta = load_episodes(out)
    assert [e.seed for e in eps] == [0, 1, 2, 3] and meta["seeds"] == [0, 3]
    assert summary["expert_success_rate"] == 1.0
    for e in eps:
        assert e.states.shape == (200, 3) and e.actions.shape == (200, 1)
        assert np.all(np.abs(e.actions) <= 2.0) and e.dones[-1] and not e.dones[:-1].any()
    collect(ENV, 1, tmp_path, seed0=0)
    again, _ = load_episodes(tmp_path)
    np.testing.assert_array_equal(again[0].states, eps[0].states)


def test_windows_pad_and_mask():
    ep = lambda L, s: Episode(np.arange(L * 2, dtype=np.float32).reshape(L, 2), np.zeros((L, 1), np.float32),  # noqa: E731
                              np.ones(L, np.float32), np.eye(1, L, L - 1, dtype=bool)[0], True, s)
    ds = WindowDataset([ep(3, 0), ep(6, 1)], context=4)
    assert len(ds) == 1 + 3  # short episode: one padded window; long: starts 0..2
    b = ds.batch(torch.tensor([0, 3]))
    assert b["mask"].tolist() == [[True, True, True, False], [True] * 4]
    assert b["rtg"][0].tolist() == [3.0, 2.0, 1.0, 0.0]
    assert b["rtg"][1].tolist() == [4.0, 3.0, 2.0, 1.0]  # window at start 2 of a 6-step episode
    assert b["obs"][0, 3].abs().sum() == 0


def test_lr_schedule():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=0.01)


def test_tiny_overfit_loss_decreases(pendulum_data):
    out, _ = pendulum_data
    eps, meta = load_episodes(out)
    _, info = train(None, TrainConfig(preset="tiny", steps=40, batch_size=8, lr=3e-3, warmup_steps=5),
                    episodes=eps[:1], meta=meta)
    assert info["final_loss"] < 0.8 * info["initial_loss"]


def test_training_is_deterministic(pendulum_data):
    out, _ = pendulum_data
    cfg = TrainConfig(preset="tiny", steps=3, batch_size=4, warmup_steps=1, seed=7)
    a, _ = train(out, cfg)
    b, _ = train(out, cfg)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_train_evaluate_pendulum(pendulum_data, tmp_path):
    out, summary = pendulum_data
    ckpt = tmp_path / "ckpt"
    model, info = train(out, TrainConfig(preset="tiny", steps=30, batch_size=8, warmup_steps=5), out=ckpt)
    meta = json.loads((ckpt / "config.json").read_text())
    extra = meta["extra"]
    assert extra["data_seeds"] == [0, 3] and extra["steps"] == 30 and extra["final_loss"] == info["final_loss"]
    task = meta["task"]
    assert task["target_return"] == pytest.approx(summary["mean_return"], rel=1e-4)
    assert len(task["obs_low"]) == 3 and all(lo < hi for lo, hi in zip(task["obs_low"], task["obs_high"]))

    loaded = load_checkpoint(ckpt)
    r = evaluate(loaded, episodes=2, seed0=10_000, batch=2, data_seeds=extra["data_seeds"])
    assert r["env_id"] == ENV and r["seeds"] == [10_000, 10_001]
    assert [p["seed"] for p in r["per_seed"]] == [10_000, 10_001]
    assert all(p["length"] == 200 for p in r["per_seed"]) and 0.0 <= r["success_rate"] <= 1.0
    # batch 1 runs the same episodes (recurrent state per row, independent of batching)
    r1 = evaluate(loaded, episodes=1, seed0=10_001, batch=1)
    assert r1["per_seed"][0]["return"] == pytest.approx(r["per_seed"][1]["return"], rel=1e-3, abs=1e-2)
    with pytest.raises(EvaluationError, match="overlap"):
        evaluate(loaded, episodes=2, seed0=2, data_seeds=[0, 3])


def test_cli_collect_train_evaluate_info(tmp_path):
    from lram.cli.main import cli

    runner = CliRunner()
    data, ckpt = tmp_path / "data", tmp_path / "ckpt"
    r = runner.invoke(cli, ["collect", "--env", ENV, "--episodes", "2", "--out", str(data)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["train", "--data", str(data), "--preset", "tiny", "-o", str(ckpt), "--steps", "3",
                            "--batch-size", "4", "--threads", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["evaluate", str(ckpt), "--episodes", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["episodes"] == 1 and res["per_seed"][0]["seed"] == 10_000
    r = runner.invoke(cli, ["info", str(ckpt)])
    assert r.exit_code == 0 and "recurrent state per robot" in r.output, r.output
    r = runner.invoke(cli, ["info", "--preset", "small", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) == {"small", "small-mlstm"} and d["small"]["flavour"] != d["small-mlstm"]["flavour"]
    assert d["small-mlstm"]["state_bytes_per_robot_fp32"] > 0


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "{tmp}/missing", "-o", "{tmp}/c"], "does not exist"),
    (["train", "--data", "{tmp}", "-o", "{tmp}/c", "--preset", "huge"], "unknown preset"),
    (["train", "--data", "{tmp}", "-o", "{tmp}/c"], "not an episode folder"),
    (["evaluate", "{tmp}/missing"], "does not exist"),
    (["evaluate", "{tmp}/foreign.txt"], "not an lram checkpoint"),
    (["info", "{tmp}/foreign.txt"], "not an lram checkpoint"),
    (["info", "--preset", "huge"], "unknown preset"),
    (["collect", "--env", "gym:Nope-v0", "--episodes", "1", "--out", "{tmp}/d"], "unknown environment"),
])
def test_cli_bad_input_is_a_clean_error(tmp_path, args, message):
    from lram.cli.main import cli

    (tmp_path / "foreign.txt").write_text("hello")
    r = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code != 0
    assert message in r.output, r.output
    assert "Traceback" not in r.output and not isinstance(r.exception, (TypeError, AttributeError, KeyError))


@pytest.mark.slow
def test_shipped_reference_policy_solves_unseen_layouts():
    pytest.importorskip("metaworld")
    from pathlib import Path

    import lram.model as pkg

    ref = Path(pkg.__file__).parent / "reference" / "pick-place-v3"
    model = load_checkpoint(ref)
    extra = json.loads((ref / "config.json").read_text())["extra"]
    assert model.task.name == "metaworld:pick-place-v3" and model.task.target_return > 0
    r = evaluate(model, episodes=4, seed0=10_000, batch=4, data_seeds=extra["data_seeds"])
    assert r["success_rate"] >= 0.75, r["per_seed"]
