"""Our exported graphs go through NVIDIA's ONNX parser and builder (TensorRT for RTX runs on a CPU)."""
import importlib.util

import pytest

from lram.export.onnx_export import export_onnx
from lram.compile.tensorrt_build import check_graph
from lram.runtime.manifest import Manifest, sidecar_path

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None,
                                reason="tensorrt-rtx not installed (it is part of the dev extra)")


@pytest.mark.parametrize("name,kind", [("tiny", "state"), ("tiny-mlstm", "image")])
def test_standard_graph_parses_and_builds(tmp_path, make, name, kind):
    path = export_onnx(make(name, kind), tmp_path / "g.onnx")
    manifest = Manifest.from_json(sidecar_path(path).read_text())
    res = check_graph(path, max_batch=8)
    assert set(res.inputs) == {t.name for t in manifest.inputs}
    assert all(shapes[2][0] == 8 for shapes in res.inputs.values())  # the batch profile reaches --max-batch
    assert set(res.outputs) == {t.name for t in manifest.outputs}
    assert res.engine_bytes > 0
