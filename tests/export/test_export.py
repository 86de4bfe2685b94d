"""The exported single-step graph against PyTorch: parity, row independence, manifest, bad input."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from lram.cli.main import cli
from lram.export.onnx_export import ExportError, export_onnx
from lram.export.step_graph import StepGraph
from lram.verify.parity import verify
from lram.verify.runners import CheckpointRunner, GraphRunner
from lram.model.checkpoint import save_checkpoint
from lram.runtime.manifest import METADATA_KEY, Manifest, sidecar_path



def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["tiny", "tiny-mlstm"])
@pytest.mark.parametrize("kind", ["state", "image"])
def test_parity_with_pytorch_step(tmp_path, make, name, kind):
    model = make(name, kind, seed=1)
    path = export_onnx(model, tmp_path / "p.onnx")
    steps = 120 if kind == "state" else 40
    report = verify(GraphRunner(path), CheckpointRunner(model), steps=steps, robots=3, env_id="", window=steps // 2)
    assert report.passed, report
    assert report.max_abs_logit_diff <= 1e-4 and report.action_agreement == 1.0
    assert report.max_abs_logit_diff > 0  # fp32 against float64: never bit-equal, so the comparison ran


def test_step_graph_matches_the_parallel_forward(make):
    """The functional cells against the xlstm package's own parallel form, not only its step()."""
    model = make("tiny", seed=2)
    graph = StepGraph(model)
    torch.manual_seed(3)
    T = 30
    obs, rtg, rew = torch.randn(1, T, 11), torch.randn(1, T) * 300, torch.randn(1, T) * 10
    with torch.no_grad():
        parallel = model(obs, rtg, rew)[0]
        state = graph.zero_state(1)
        for t in range(T):
            prev = rew[:, t - 1 : t] if t else torch.full((1, 1), 1e4)  # ignored at an episode start
            out = graph(obs[:, t], rtg[:, t : t + 1], prev, torch.tensor([t == 0]), *state)
            state = list(out[2:])
            assert (out[1][0] - parallel[t]).abs().max() <= 1e-5


def test_exact_logsigmoid_survives_strongly_negative_forget_gates(tmp_path, make):
    """Log(Sigmoid(x)) is -inf below about -18 in ONNX Runtime and wipes the memory; -softplus(-x) is exact."""
    model = make("tiny-mlstm", seed=4)
    with torch.no_grad():
        for block in model.encoder.layers.blocks:
            block.xlstm.mlstm_cell.fgate.bias.fill_(-40.0)
    path = export_onnx(model, tmp_path / "f.onnx")
    report = verify(GraphRunner(path), CheckpointRunner(model), steps=60, robots=2, env_id="", window=60)
    assert report.passed, report
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "Softplus" in ops and "Log" not in ops


def test_verify_catches_a_wrong_graph(tmp_path, make):
    model = make("tiny", seed=5)
    path = export_onnx(model, tmp_path / "w.onnx")
    proto = onnx.load(path)
    big = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = onnx.numpy_helper.to_array(big) * 1.01
    big.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), big.name))
    onnx.save(proto, path)
    report = verify(GraphRunner(path), CheckpointRunner(model), steps=40, robots=2, env_id="", window=40)
    assert not report.passed and report.max_abs_logit_diff > 1e-4 and report.worst_excess > 1


def _run(sess, feeds_seq, state):
    outs = [o.name for o in sess.get_outputs()]
    results = []
    for feeds in feeds_seq:
        res = dict(zip(outs, sess.run(None, {**feeds, **state})))
        state = {k.replace("state_out.", "state_in."): v for k, v in res.items() if k.startswith("state_out.")}
        results.append(res)
    return results


def test_resetting_one_row_leaves_the_others_bit_identical(tmp_path, make):
    model = make("tiny", seed=6)
    path = export_onnx(model, tmp_path / "b.onnx")
    sess = session(path)
    manifest = Manifest.from_json(sidecar_path(path).read_text())
    rng = np.random.default_rng(0)
    B, T = 3, 12
    seq = [{"obs": rng.standard_normal((B, 11)).astype(np.float32),
            "rtg": rng.standard_normal((B, 1)).astype(np.float32) * 100,
            "prev_reward": rng.standard_normal((B, 1)).astype(np.float32)} for _ in range(T)]
    state = {s.input: np.zeros((B, *s.shape), np.float32) for s in manifest.state}
    a = [dict(f, first=np.array([t == 0] * B)) for t, f in enumerate(seq)]
    b = [dict(f, first=np.array([t == 0, t in (0, 7), t == 0])) for t, f in enumerate(seq)]
    ra, rb = _run(sess, a, state), _run(sess, b, state)
    for t in range(T):
        for name in ra[t]:
            np.testing.assert_array_equal(ra[t][name][[0, 2]], rb[t][name][[0, 2]])
    assert not np.array_equal(ra[8]["logits"][1], rb[8]["logits"][1])  # the reset row did change
    # a reset row equals a fresh single-robot episode started at that step
    single = _run(sess, [dict({k: v[1:2] for k, v in f.items()}, first=np.array([t == 7]))
                         for t, f in enumerate(seq) if t >= 7],
                  {s.input: np.zeros((1, *s.shape), np.float32) for s in manifest.state})
    for t in range(7, T):
        np.testing.assert_allclose(single[t - 7]["logits"][0], rb[t]["logits"][1], atol=1e-5)


def test_manifest_describes_the_graph(tmp_path, state_model):
    path = export_onnx(state_model, tmp_path / "m.onnx")
    proto = onnx.load(path)
    embedded = {p.key: p.value for p in proto.metadata_props}[METADATA_KEY]
    assert json.loads(embedded) == json.loads(sidecar_path(path).read_text())
    manifest = Manifest.from_json(embedded)
    assert manifest.opset == 17 and {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    onnx.checker.check_model(proto, full_check=True)
    sess = session(path)
    graph_inputs = {i.name: i for i in sess.get_inputs()}
    assert [t.name for t in manifest.inputs] == [i.name for i in sess.get_inputs()]
    assert [t.name for t in manifest.outputs] == [o.name for o in sess.get_outputs()]
    state_bytes = sum(4 * int(np.prod(graph_inputs[s.input].shape[1:])) for s in manifest.state)
    assert manifest.state_bytes_per_robot == state_bytes
    torch_state = state_model.init_state(1)
    torch_bytes = sum(t.numel() * 4 for blk in torch_state.values() for v in blk.values()
                      for t in (v if isinstance(v, tuple) else (v,)))
    assert state_bytes == torch_bytes  # the same memory as the package's own state, laid out batch-first
    assert manifest.action["low"] == [-1.0, -2.0, 0.0] and manifest.reward_scale == 200.0
    assert manifest.observation["low"] == [-3.0] * 11


def test_fixed_batch_export(tmp_path, state_model):
    path = export_onnx(state_model, tmp_path / "fixed.onnx", batch=4)
    assert session(path).get_inputs()[0].shape == [4, 11]


def test_bad_outputs_leave_nothing_behind(tmp_path, state_model):
    with pytest.raises(ExportError, match="end in .onnx"):
        export_onnx(state_model, tmp_path / "x.txt")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a file where the output folder should be (root ignores chmod, so no read-only dir)
    with pytest.raises(ExportError, match="cannot create the output folder"):
        export_onnx(state_model, blocker / "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]
    with pytest.raises(ExportError, match="opset"):
        export_onnx(state_model, tmp_path / "y.onnx", opset=9)
    assert not (tmp_path / "y.onnx").exists()


def test_cli_export_and_verify(tmp_path, state_model, make):
    ckpt = save_checkpoint(state_model, tmp_path / "ckpt")
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(ckpt), "-o", str(tmp_path / "c.onnx")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["verify", str(tmp_path / "c.onnx"), "--against", str(ckpt), "--steps", "60",
                              "--window", "30", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and json.loads((tmp_path / "r.json").read_text())["passed"]
    # a checkpoint without its config: a clear error, no partial .onnx
    (ckpt / "config.json").unlink()
    res = runner.invoke(cli, ["export", str(ckpt), "-o", str(tmp_path / "d.onnx")])
    assert res.exit_code != 0 and "config.json" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "d.onnx").exists()
    # verifying against another model is refused
    other = save_checkpoint(make("tiny-mlstm", seed=9), tmp_path / "other")
    res = runner.invoke(cli, ["verify", str(tmp_path / "c.onnx"), "--against", str(other), "--steps", "10"])
    assert res.exit_code != 0 and "another model" in res.output
