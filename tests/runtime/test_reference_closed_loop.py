"""The shipped reference policy, exported and run through the runtime's control loop on ONNX Runtime, reaches
the success rate of the PyTorch model on the same unseen layouts."""
from pathlib import Path

import pytest
import torch

from lram.export.onnx_export import export_onnx
from lram.model.checkpoint import load_checkpoint
from lram.model.evaluate import evaluate
from lram.runtime.control_loop import ControlLoop, LoopConfig
from lram.runtime.gym_adapter import GymAdapter
from lram.runtime.policy import Policy

REF = Path(__file__).resolve().parents[2] / "model" / "reference" / "pick-place-v3"
EPISODES, SEED0 = 30, 10_000  # evaluation seeds, never used for the training data (0..149)

pytest.importorskip("metaworld")


@pytest.mark.slow
def test_runtime_matches_pytorch_success(tmp_path):
    torch.set_num_threads(1)
    model = load_checkpoint(REF)
    graph = export_onnx(model, tmp_path / "ref.onnx")
    torch_result = evaluate(model, episodes=EPISODES, seed0=SEED0, batch=10)

    policy = Policy.load(graph, n_robots=1, backend="ort-cpu", threads=1)
    adapter = GymAdapter("metaworld:pick-place-v3", EPISODES, seed=SEED0)
    # a generous watchdog: this test is about the policy, not the timing of a shared CI machine
    loop = ControlLoop(policy, adapter.sense, adapter.act, LoopConfig(hz=50, warmup=2, realtime=False, timeout_periods=50.0))
    report = loop.run()
    adapter.close()
    runtime = adapter.summary()

    assert runtime["episodes"] == EPISODES
    assert sum(report.misses.values()) == 0, report.misses  # no rejected observation, no timeout
    assert torch_result["success_rate"] >= 0.7  # the policy is a real one, so agreement means something
    assert abs(runtime["success_rate"] - torch_result["success_rate"]) <= 0.05, (runtime, torch_result)
