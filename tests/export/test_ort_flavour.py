"""The ort flavour: the mLSTM memory update as com.microsoft::LinearAttention, equal to the standard flavour and to
PyTorch (perturbed weights, resets in some rows, strongly negative forget gates)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from lram.export.cells import mlstm_cell
from lram.export.onnx_export import export_onnx
from lram.export.ort_cells import DOMAIN, gated_linear_attention, mlstm_cell_ort
from lram.runtime.manifest import Manifest, sidecar_path


def _session(src):
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    src = src.SerializeToString() if isinstance(src, onnx.ModelProto) else str(src)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def test_operator_is_the_gated_recurrence_on_a_three_token_chunk():
    """The contrib schema as the cell uses it: per-head decay, scale 1, output after the token's update, a -1e30
    decay at token 0 zeroes the carried state without disturbing tokens 1 and 2."""
    H, Dk, Dv, B, T = 2, 8, 5, 3, 3
    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    node = helper.make_node("LinearAttention", ["q", "k", "v", "S", "g"], ["o", "S2"], domain=DOMAIN,
                            q_num_heads=H, kv_num_heads=H, update_rule="gated", scale=1.0)
    graph = helper.make_graph([node], "la", [f(n) for n in "qkvSg"], [f("o"), f("S2")])
    sess = _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(B, T, H * Dk, generator=g), torch.randn(B, T, H * Dk, generator=g)
    v, S = torch.randn(B, T, H * Dv, generator=g), torch.randn(B, H, Dk, Dv, generator=g)
    decay = -3 * torch.rand(B, T, H, generator=g)
    decay[0, 0] = -1e30
    o, S2 = sess.run(None, {n: x.numpy() for n, x in zip("qkvSg", (q, k, v, S, decay))})
    ro, rS = gated_linear_attention(q.double(), k.double(), v.double(), S.double(), decay.double())
    np.testing.assert_allclose(o, ro.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(S2, rS.numpy(), rtol=1e-5, atol=1e-5)
    fresh, _ = gated_linear_attention(q[:1].double(), k[:1].double(), v[:1].double(), 0 * S[:1].double(),
                                      decay[:1].double())
    np.testing.assert_allclose(o[:1], fresh.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fbias", [0.0, -40.0])
def test_cell_equals_the_standard_cell(fbias):
    g = torch.Generator().manual_seed(1)
    B, T, NH, DH = 4, 3, 2, 6
    r = lambda *s, scale=1.0: scale * torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = r(B, T, NH * DH), r(B, T, NH * DH), r(B, T, NH * DH)
    i_raw, f_raw = r(B, T, NH, scale=3.0), r(B, T, NH, scale=3.0) + fbias
    C, n, m = r(B, NH, DH, DH), r(B, NH, DH, 1).abs(), r(B, NH, 1, 1, scale=5.0)
    valid0 = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # rows 1 and 3 start an episode
    h0, s0 = mlstm_cell(q, k, v, i_raw, f_raw, valid0, C, n, m, NH, DH)
    h1, s1 = mlstm_cell_ort(q, k, v, i_raw, f_raw, valid0, C, n, m, NH, DH)
    torch.testing.assert_close(h1, h0, rtol=1e-9, atol=1e-9)
    for a, b in zip(s1, s0):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert h0.abs().max() > 1e-3 and s0[0].abs().max() > 1e-3  # not vacuous


def test_export_refuses_unknown_flavour(tmp_path, state_model):
    with pytest.raises(ValueError, match="flavour must be one of"):
        export_onnx(state_model, tmp_path / "x.onnx", flavour="fast")


def test_cli_ort_flavour_and_tensorrt_refuses_it(tmp_path, state_model):
    from click.testing import CliRunner

    from lram.cli.main import cli
    from lram.model.checkpoint import save_checkpoint

    ckpt = save_checkpoint(state_model, tmp_path / "ckpt")
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(ckpt), "-o", str(tmp_path / "p.onnx"), "--flavour", "ort"])
    assert res.exit_code == 0 and "ort flavour" in res.output, res.output
    assert Manifest.from_json(sidecar_path(tmp_path / "p.onnx").read_text()).flavour == "ort"
    res = runner.invoke(cli, ["compile", "--check", str(tmp_path / "p.onnx")])
    assert res.exit_code != 0 and "--flavour standard" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["export", str(ckpt), "-o", str(tmp_path / "s.onnx"), "--flavour", "standard"])
    assert res.exit_code == 0 and "standard flavour" in res.output
    assert {n.domain for n in onnx.load(tmp_path / "s.onnx").graph.node} <= {"", "ai.onnx"}
