"""Every ONNX Runtime flavour of the same model against the standard graph and against PyTorch: perturbed weights,
episode starts in some rows, and a forget-gate bias of -40 (the stabiliser and the reset fold do all the work)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from lram.export.onnx_export import export_onnx
from lram.export.ort_cells import DOMAIN as ORT_DOMAIN
from lram.runtime.manifest import Manifest, sidecar_path
from lram.runtime.native_xlstm import DOMAIN as NATIVE_DOMAIN
from lram.runtime.native_xlstm import MLSTM_OP, SLSTM_OP
from lram.verify.parity import verify
from lram.verify.runners import CheckpointRunner, GraphRunner

from .conftest import drive, with_forget_bias


def _op_counts(path, domain) -> dict:
    counts = {}
    for n in onnx.load(path).graph.node:
        if n.domain == domain:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


# flavour -> (its nodes given (#mLSTM, #sLSTM) blocks, logits atol vs standard, state atol/rtol vs standard)
FLAVOURS = {
    "ort": (lambda path, nm, ns: _op_counts(path, ORT_DOMAIN) == {"LinearAttention": 2 * nm}, 2e-5, 1e-4),
    "native": (lambda path, nm, ns: _op_counts(path, NATIVE_DOMAIN) == {k: v for k, v in ((MLSTM_OP, nm), (SLSTM_OP, ns)) if v},
               5e-5, 2e-4),
}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", ["tiny", "tiny-mlstm"])
@pytest.mark.parametrize("fbias", [None, -40.0])
def test_flavour_equals_standard_and_pytorch(tmp_path, make, flavour, name, fbias):
    model = with_forget_bias(make(name, seed=7), fbias)
    std = export_onnx(model, tmp_path / "standard.onnx")
    other = export_onnx(model, tmp_path / f"{flavour}.onnx", flavour=flavour)
    manifest = Manifest.from_json(sidecar_path(other).read_text())
    assert manifest.flavour == flavour
    nodes_ok, logit_atol, state_tol = FLAVOURS[flavour]
    n_mlstm = sum(kind == "mlstm" for kind in model.config.block_types)
    assert nodes_ok(other, n_mlstm, len(model.config.block_types) - n_mlstm)
    a, sa = drive(std, manifest, 40, 4, seed=fbias is None)
    b, sb = drive(other, manifest, 40, 4, seed=fbias is None)
    np.testing.assert_allclose(b, a, atol=logit_atol, rtol=0)
    for key in sa:
        np.testing.assert_allclose(sb[key], sa[key], atol=state_tol, rtol=state_tol)
    report = verify(GraphRunner(other), CheckpointRunner(model), steps=60, robots=3, env_id="", window=60)
    assert report.passed and report.action_agreement == 1.0, report
    assert report.max_abs_logit_diff > 0
