"""A policy refuses a manifest it cannot read and a graph that disagrees with its manifest."""
from __future__ import annotations

import dataclasses
import json

import pytest

from lram.runtime.manifest import ManifestError, StateSpec, TensorSpec, sidecar_path
from lram.runtime.policy import Policy


def _load(path):
    return Policy.load(path, backend="ort-cpu")


def test_loads_from_metadata_only(tmp_path, fake):
    path = fake.write_fake_policy(tmp_path / "m.onnx", sidecar=False)
    p = _load(path)
    assert [s.name for s in p.manifest.state] == ["0.C", "1.h"]


def test_loads_from_sidecar_only(tmp_path, fake):
    path = fake.write_fake_policy(tmp_path / "m.onnx", metadata=False)
    assert _load(path).manifest.target_return == 100.0


def test_no_manifest_refused(tmp_path, fake):
    path = fake.write_fake_policy(tmp_path / "m.onnx", sidecar=False, metadata=False)
    with pytest.raises(ManifestError, match="no manifest"):
        _load(path)


@pytest.mark.parametrize("field,value,match", [
    ("format_version", 3, "format_version 3 is not supported"),
    ("format_version", 1, "format_version 1 is not supported.*re-export"),
    ("format", "something-else", "not an lram step-graph manifest"),
])
def test_unknown_version_or_format_refused(tmp_path, fake, field, value, match):
    path = fake.write_fake_policy(tmp_path / "m.onnx", metadata=False)
    d = json.loads(sidecar_path(path).read_text())
    d[field] = value
    sidecar_path(path).write_text(json.dumps(d))
    with pytest.raises(ManifestError, match=match):
        _load(path)


def test_stale_sidecar_refused(tmp_path, fake):
    path = fake.write_fake_policy(tmp_path / "m.onnx")
    d = json.loads(sidecar_path(path).read_text())
    d["reward_scale"] = 1.0
    sidecar_path(path).write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="disagree"):
        _load(path)


def _with_sidecar(tmp_path, fake, manifest_edit):
    """The genuine graph, but a sidecar manifest edited to disagree with it."""
    m = fake.make_manifest()
    path = fake.write_fake_policy(tmp_path / "m.onnx", m, metadata=False)
    sidecar_path(path).write_text(manifest_edit(m).to_json())
    return path


def test_renamed_state_refused(tmp_path, fake):
    def edit(m):
        state = [m.state[0], StateSpec("1.c", [16])]
        inputs = [t if t.name != "state_in.1.h" else TensorSpec("state_in.1.c", t.shape, t.dtype) for t in m.inputs]
        outputs = [t if t.name != "state_out.1.h" else TensorSpec("state_out.1.c", t.shape, t.dtype) for t in m.outputs]
        return dataclasses.replace(m, state=state, inputs=inputs, outputs=outputs)

    with pytest.raises(ManifestError, match="state_in.1.c' is in the manifest but not in the graph"):
        _load(_with_sidecar(tmp_path, fake, edit))


def test_dtype_mismatch_refused(tmp_path, fake):
    def edit(m):
        return dataclasses.replace(m, inputs=[TensorSpec(t.name, t.shape, "float16") if t.name == "state_in.0.C" else t
                                              for t in m.inputs])

    with pytest.raises(ManifestError, match="state_in.0.C': graph dtype float32, manifest float16"):
        _load(_with_sidecar(tmp_path, fake, edit))


def test_rank_mismatch_refused(tmp_path, fake):
    def edit(m):
        return dataclasses.replace(m, outputs=[TensorSpec(t.name, ["batch", 1, 1], t.dtype) if t.name == "action" else t
                                               for t in m.outputs])

    with pytest.raises(ManifestError, match="action': graph rank 2, manifest rank 3"):
        _load(_with_sidecar(tmp_path, fake, edit))


def test_extra_graph_output_refused(tmp_path, fake):
    # the graph has logits, the manifest forgot them
    m = fake.make_manifest(logits=True)
    path = fake.write_fake_policy(tmp_path / "m.onnx", m, metadata=False)
    sidecar_path(path).write_text(dataclasses.replace(m, outputs=[t for t in m.outputs if t.name != "logits"]).to_json())
    with pytest.raises(ManifestError, match="'logits' is in the graph but not in the manifest"):
        _load(path)
