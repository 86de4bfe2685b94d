"""The plugin flavour: one lram::*CellStep node per block with the kernels' contract, runnable by ONNX Runtime
once expanded into model-local functions, and equal to the standard flavour (perturbed weights: the stock init
zeroes the gates, which would make a parity test pass vacuously)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from lram.export.onnx_export import export_onnx  # noqa: E402
from lram.export.plugin_expand import PluginError, expand_plugin_nodes, plugin_nodes  # noqa: E402
from lram.export.step_graph import StepGraph  # noqa: E402
from lram.kernels import reference as ref  # noqa: E402
from lram.model.config import TaskSpec, preset  # noqa: E402
from lram.model.lram import LRAM  # noqa: E402

PRESETS = ["tiny", "tiny-mlstm"]
PLUGIN_ATTRS = {"plugin_namespace": b"lram", "plugin_version": b"1", "aot": 1}
TASK = TaskSpec(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4, action_low=(-1,) * 4,
                action_high=(1,) * 4, reward_scale=200.0)


def _session(model_or_path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    src = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for i, name in enumerate(PRESETS):
        torch.manual_seed(i)
        model = LRAM(preset(name), TASK)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        d = tmp_path_factory.mktemp(name)
        out[name] = (model.eval(), export_onnx(model, d / "standard.onnx"),
                     export_onnx(model, d / "plugin.onnx", flavour="plugin"))
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_plugin_graph_structure(exported, name):
    model, std_path, plg_path = exported[name]
    std, plg = onnx.load(str(std_path)), onnx.load(str(plg_path))
    assert {n.domain for n in std.graph.node} <= {""}
    assert {n.domain for n in plg.graph.node} == {"", "lram"}
    imports = {i.domain: i.version for i in plg.opset_import}
    assert imports.get("lram") == 1 and imports.get("") == 17

    cells = [n for n in plg.graph.node if n.domain == "lram"]
    kinds = ["MLSTMCellStep" if k == "mlstm" else "SLSTMCellStep" for k in model.config.block_types]
    assert [n.op_type for n in cells] == kinds  # exactly one per block, in block order
    for n in cells:
        assert {a.name: helper.get_attribute_value(a) for a in n.attribute} == PLUGIN_ATTRS
        assert (len(n.input), len(n.output)) == ((9, 4) if n.op_type == "MLSTMCellStep" else (8, 5))
    # the state is the cells' own: state_in (zeroed at entry) goes in, the node's outputs are state_out
    for i, n in enumerate(cells):
        names = ["C", "n", "m"] if n.op_type == "MLSTMCellStep" else ["h", "c", "n", "m"]
        assert list(n.output[1:]) == [f"state_out.{i}.{p}" for p in names]
    # the sLSTM weights enter as initializers in the kernel's layout
    inits = {t.name: t for t in plg.graph.initializer}
    for i, n in enumerate(cells):
        if n.op_type == "SLSTMCellStep":
            H, NH = model.config.embedding_dim, model.config.num_heads
            assert list(inits[n.input[6]].dims) == [NH, 4 * H // NH, H // NH]
            assert list(inits[n.input[7]].dims) == [4 * H]

    listed = plugin_nodes(plg)
    assert [(p.op_type, p.version) for p in listed] == [(k, "1") for k in kinds]
    assert plugin_nodes(std) == []
    expanded = expand_plugin_nodes(plg)
    assert sorted(f.name for f in expanded.functions) == sorted(set(kinds))
    onnx.checker.check_model(expanded, full_check=True)
    assert len(plg.functions) == 0  # the input is not modified


def test_torch_plugin_flavour_equals_standard(exported):
    model, _, _ = exported["tiny"]
    std, plg = StepGraph(model).eval(), StepGraph(model, flavour="plugin").eval()
    g = torch.Generator().manual_seed(3)
    s1, s2 = std.zero_state(3), plg.zero_state(3)
    with torch.no_grad():
        for step in range(6):
            first = torch.tensor([step == 0, step == 3, False])
            args = (torch.randn(3, 39, generator=g), torch.randn(3, 1, generator=g) * 100,
                    torch.randn(3, 1, generator=g), first)
            o1, o2 = std(*args, *s1), plg(*args, *s2)
            for a, b in zip(o1, o2):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
            s1, s2 = list(o1[2:]), list(o2[2:])


@pytest.mark.parametrize("name", PRESETS)
def test_ort_expanded_plugin_matches_standard(exported, name):
    _, std_path, plg_path = exported[name]
    std, plg = _session(std_path), _session(expand_plugin_nodes(onnx.load(str(plg_path))))
    outs = [o.name for o in std.get_outputs()]
    assert outs == [o.name for o in plg.get_outputs()]
    B = 3
    state = {i.name: np.zeros([B, *i.shape[1:]], np.float32)
             for i in std.get_inputs() if i.name.startswith("state_in.")}
    s_std, s_plg = dict(state), dict(state)
    rng = np.random.default_rng(7)
    worst = {n: 0.0 for n in outs[1:]}  # |diff| / max(1, max |standard|)
    logit_abs, actions, resets = 0.0, set(), 0
    for step in range(50):
        first = (rng.random(B) < 0.1) | (step == 0)
        first[step % B] |= step % 17 == 5  # a few guaranteed mid-run resets
        resets += int(first.sum())
        feed = {"obs": rng.standard_normal((B, 39)).astype(np.float32),
                "rtg": (rng.standard_normal((B, 1)) * 200).astype(np.float32),
                "prev_reward": rng.standard_normal((B, 1)).astype(np.float32), "first": first}
        a, b = std.run(outs, {**feed, **s_std}), plg.run(outs, {**feed, **s_plg})
        np.testing.assert_array_equal(a[0], b[0], err_msg=f"actions differ at step {step}")
        actions |= {tuple(row) for row in a[0].tolist()}
        logit_abs = max(logit_abs, float(np.max(np.abs(a[1] - b[1]))))
        for n, x, y in zip(outs[1:], a[1:], b[1:]):
            assert np.all(np.isfinite(y)), (n, step)
            worst[n] = max(worst[n], float(np.max(np.abs(x - y)) / max(1.0, float(np.max(np.abs(x))))))
        s_std = {n.replace("state_out.", "state_in."): v for n, v in zip(outs[2:], a[2:])}
        s_plg = {n.replace("state_out.", "state_in."): v for n, v in zip(outs[2:], b[2:])}
    assert resets > B and len(actions) > 10  # episode resets happened; the actions are not constant
    print(f"\n{name}: max |logit diff| {logit_abs:.1e}; worst |diff| / max(1, max|standard|):",
          {k: f"{v:.1e}" for k, v in worst.items()})
    assert logit_abs <= 1e-4, logit_abs
    assert max(worst.values()) <= 1e-4, worst


def _single_node_model(op_type, inputs, n_out, opset, version="1"):
    vi = lambda name, a: helper.make_tensor_value_info(name, TensorProto.FLOAT, list(a.shape))  # noqa: E731
    outs = [f"out{j}" for j in range(n_out)]
    node = helper.make_node(op_type, list(inputs), outs, domain="lram", name="cell", plugin_namespace="lram",
                            plugin_version=version, aot=1)
    ranks = [4, 4, 4, 4] if op_type == "MLSTMCellStep" else [3, 2, 2, 2, 2]
    graph = helper.make_graph([node], "g", [vi(k, v) for k, v in inputs.items()],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * r)
                               for o, r in zip(outs, ranks)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("lram", 1)])


@pytest.mark.parametrize("opset", [17, 18])
def test_functions_match_kernel_reference(opset):
    """Kernel semantics, beyond what StepGraph feeds: warm state, invalid tokens anywhere, T = 4."""
    B, T = 3, 4
    for op, make, fn, n_out, NH, DH in (("MLSTMCellStep", ref.random_mlstm_inputs, ref.mlstm_cell_step, 4, 2, 8),
                                        ("SLSTMCellStep", ref.random_slstm_inputs, ref.slstm_cell_step, 5, 2, 4)):
        inputs = make(B, T, NH, DH, seed=opset, valid_first=[1, 0, 1])
        inputs["valid"][2, 2] = 0.0  # a skipped token mid-chunk
        if op == "SLSTMCellStep":
            inputs["n"] = inputs["n"].copy()
            inputs["n"][0, :3] = 0.0  # fresh units (m' = i~)
        model = expand_plugin_nodes(_single_node_model(op, inputs, n_out, opset))
        onnx.checker.check_model(model, full_check=True)
        got = _session(model).run(None, inputs)
        want = fn(**inputs, dtype=np.float64)
        for j, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, (op, j)
            assert ref.rel_err(g, w) <= 1e-5, (op, j, ref.rel_err(g, w))


def test_unknown_plugin_version_or_op_is_refused():
    inputs = {k: np.zeros((1,), np.float32) for k in ("wx", "valid", "h", "c", "n", "m", "R", "bias")}
    model = _single_node_model("SLSTMCellStep", inputs, 5, 17, version="2")
    with pytest.raises(PluginError, match="version '2' is not implemented"):
        plugin_nodes(model)
    with pytest.raises(PluginError, match="version '2'"):
        expand_plugin_nodes(model)
    model.graph.node[0].op_type = "GRUCellStep"
    with pytest.raises(PluginError, match="unknown lram op 'GRUCellStep'"):
        plugin_nodes(model)
    model = _single_node_model("SLSTMCellStep", inputs, 4, 17)
    with pytest.raises(PluginError, match="8 inputs / 4 outputs"):
        expand_plugin_nodes(model)
