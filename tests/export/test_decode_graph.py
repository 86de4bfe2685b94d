"""The graph's in-graph action decode is the task's rule, step for step: under ``reference`` it is the reference
code's rule exactly (argmax over all 274 classes, max(argmax - 18, 0), left bin edge) on the graph's own logits."""
import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lram.export.onnx_export import export_onnx
from lram.verify.parity import verify
from lram.verify.runners import CheckpointRunner, GraphRunner
from lram.model.lram import LRAM
from lram.runtime.manifest import Manifest, sidecar_path


def _reference_rule(logits, d, low, high):
    """The rule as the issue states it on [-1, 1], mapped to the task's bounds (written here, not imported)."""
    token = np.maximum(logits[:, :d, :].argmax(-1) - 18, 0)
    return low + (token * (2 / 256) - 1 + 1) / 2 * (high - low)


def _with_decode(model: LRAM, decode: str) -> LRAM:
    model.task = dataclasses.replace(model.task, action_decode=decode)
    return model


def _episode(path, task, steps=40, robots=3, seed=0):
    """Run the graph over one episode per robot; yields (logits, action) per step."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    manifest = Manifest.from_json(sidecar_path(path).read_text())
    state = {s.input: np.zeros((robots, *s.shape), np.float32) for s in manifest.state}
    rng = np.random.default_rng(seed)
    names = [o.name for o in sess.get_outputs()]
    rtg = np.full((robots, 1), 400.0, np.float32)
    for t in range(steps):
        obs = rng.uniform(-3, 3, (robots, task.obs_shape[0])).astype(np.float32)
        reward = rng.uniform(0, 10, (robots, 1)).astype(np.float32)
        out = dict(zip(names, sess.run(None, {"obs": obs, "rtg": rtg, "prev_reward": reward,
                                             "first": np.full(robots, t == 0), **state})))
        rtg = rtg - reward
        state = {k.replace("state_out.", "state_in.", 1): v for k, v in out.items() if k.startswith("state_out.")}
        yield out["logits"], out["action"]


def test_graph_action_is_the_reference_rule_at_every_step(tmp_path, make):
    model = _with_decode(make("tiny", "state", seed=5), "reference")
    with torch.no_grad():  # make the discrete tokens win now and then, as an untrained-for-this-task head can
        model.action_net[0].bias.view(8, 274)[:, :18] += 0.6
    path = export_onnx(model, tmp_path / "ref.onnx")
    assert Manifest.from_json(sidecar_path(path).read_text()).action["decode"] == "reference"
    task = model.task
    low, high = np.asarray(task.action_low, np.float32), np.asarray(task.action_high, np.float32)
    d = task.action_dim
    steps = discrete_wins = differs_from_centre = 0
    for logits, action in _episode(path, task):
        want = _reference_rule(logits, d, low, high)
        np.testing.assert_allclose(action, want, rtol=0, atol=1e-6 * float((high - low).max()))
        torch_side = model.decode(torch.from_numpy(logits)).numpy()  # PyTorch evaluation decodes the same way
        np.testing.assert_allclose(torch_side, action, rtol=0, atol=1e-6)
        discrete_wins += int((logits[:, :d, :].argmax(-1) < 18).sum())
        centre = low + (logits[:, :d, 18:].argmax(-1) + 0.5) / 256 * (high - low)
        differs_from_centre += int((np.abs(centre - action) > 1e-6).any(axis=1).sum())
        steps += len(action)
    assert discrete_wins > 0, "no discrete token won: the test did not exercise the -1 case"
    assert differs_from_centre == steps  # the two rules never agree (left edge vs centre): the test can tell them apart


@pytest.mark.parametrize("decode", ["reference", "bin_center"])
def test_verify_checks_the_graph_decode(tmp_path, make, decode):
    model = _with_decode(make("tiny", "state", seed=6), decode)
    path = export_onnx(model, tmp_path / "g.onnx")
    report = verify(GraphRunner(path), CheckpointRunner(model), steps=20, robots=2, env_id="", window=20)
    assert report.passed and report.action_agreement == 1.0
    other = "bin_center" if decode == "reference" else "reference"
    with pytest.raises(Exception, match="another model"):  # a graph decodes one way; the hash says which
        verify(GraphRunner(path), CheckpointRunner(_with_decode(make("tiny", "state", seed=6), other)), steps=2, robots=1, env_id="")
