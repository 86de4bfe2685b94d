"""Closed loop in a real simulator through the adapter and the CLI, with the fake graph (no realtime)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from lram.runtime.control_loop import ControlLoop, LoopConfig
from lram.runtime.gym_adapter import GymAdapter


def test_pendulum_through_adapter(make_policy):
    p = make_policy(n=1)
    env = GymAdapter("gym:Pendulum-v1", episodes=1, seed=3)
    acts = []

    def act(a):
        acts.append(float(a[0, 0]))
        env.act(a)

    loop = ControlLoop(p, env.sense, act, LoopConfig(hz=50, realtime=False, warmup=2))
    rep = loop.run(max_steps=40)
    env.close()
    assert rep.ticks == 40 and rep.missed == 0 and rep.stop_reason == "max_steps"
    assert len(set(acts)) > 10 and max(abs(a) for a in acts) <= 2.0
    # the policy's return-to-go went down by the rewards the adapter fed back (pendulum rewards are <= 0)
    assert p.returns.collected[0] < 0


def test_episode_boundaries_reset_and_count(make_policy):
    p = make_policy(n=1)
    env = GymAdapter("gym:Pendulum-v1", episodes=2, seed=0)
    readings = []

    def sense():
        r = env.sense()
        readings.append(bool(np.asarray(r.first)))
        return r

    rep = ControlLoop(p, sense, env.act, LoopConfig(hz=50, realtime=False, warmup=0)).run()
    env.close()
    assert rep.stop_reason == "sensor_end" and rep.ticks == 400
    assert [i for i, f in enumerate(readings) if f] == [0, 200]
    assert env.summary()["episodes"] == 2


def test_cli_run_pendulum(pendulum_model, tmp_path):
    from lram.cli.main import cli

    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(pendulum_model), "--env", "gym:Pendulum-v1", "--episodes", "1",
                                   "--no-realtime", "--max-steps", "60", "--report", str(out / "r.json"),
                                   "--plots", str(out / "plots"), "--miss-policy", "zero"])
    assert res.exit_code == 0, res.output
    assert "p99" in res.output and "success rate" in res.output
    d = json.loads((out / "r.json").read_text())
    assert d["ticks"] == 60 and d["config"]["miss_policy"] == "zero" and d["config"]["backend"] == "ort-cpu"
    assert (out / "plots" / "latency_hist.png").stat().st_size > 1000
    assert (out / "plots" / "timeline.png").stat().st_size > 1000


def test_cli_ctrl_c_still_writes_report(pendulum_model, tmp_path, monkeypatch):
    from lram.cli.main import cli

    calls = {"n": 0}
    orig = GymAdapter.sense

    def sense(self):
        calls["n"] += 1
        if calls["n"] > 15:
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(GymAdapter, "sense", sense)
    res = CliRunner().invoke(cli, ["run", str(pendulum_model), "--env", "gym:Pendulum-v1", "--episodes", "3",
                                   "--no-realtime", "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 130, res.output
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["stop_reason"] == "interrupted" and d["ticks"] == 15


def test_cli_clear_errors(pendulum_model, tmp_path, fake):
    from lram.cli.main import cli

    no_target = fake.write_fake_policy(tmp_path / "nt.onnx", fake.make_manifest(target_return=None))
    res = CliRunner().invoke(cli, ["run", str(no_target), "--env", "gym:Pendulum-v1", "--no-realtime"])
    assert res.exit_code != 0 and "--target-return" in res.output

    res = CliRunner().invoke(cli, ["run", str(pendulum_model), "--env", "nope:x", "--no-realtime"])
    assert res.exit_code != 0 and "unknown environment" in res.output
    res = CliRunner().invoke(cli, ["run", str(pendulum_model), "--env", "gym:Pendulum-v1", "--backend", "ort-cuda"])
    assert res.exit_code != 0 and "CUDAExecutionProvider" in res.output


@pytest.mark.slow
def test_metaworld_pick_place_short(tmp_path, fake):
    pytest.importorskip("metaworld")
    from lram.runtime.policy import Policy

    path = fake.write_fake_policy(tmp_path / "mw.onnx", fake.make_manifest(obs_dim=39, act_dim=4, low=-1.0, high=1.0,
                                                                           target_return=4500.0, reward_scale=200.0))
    p = Policy.load(path, backend="ort-cpu")
    env = GymAdapter("metaworld:pick-place-v3", episodes=1, seed=1)
    rep = ControlLoop(p, env.sense, env.act, LoopConfig(hz=50, realtime=False, warmup=0)).run(max_steps=30)
    assert rep.ticks == 30 and rep.missed == 0
    # fresh random layouts: two seeds give different object/goal positions, the same seed the same layout
    o1, o2, o1_again = env.env.reset(1), env.env.reset(2), env.env.reset(1)
    assert np.abs(o1 - o2).max() > 1e-3
    np.testing.assert_array_equal(o1, o1_again)
    env.close()
    p.close()
