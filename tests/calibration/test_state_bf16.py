"""The opt-in bf16 matrix memory (lram calibrate --precision bf16-state): only the native graph's mLSTM memories
change type, the runtime carries them as bfloat16 slots, the compiled layer rounds C once per step and nothing
else, and the result stays close to FP32."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from lram.calibration.graph import GraphError
from lram.calibration.state_bf16 import write_state_bf16
from lram.runtime.model_files import read_manifest
from lram.runtime.policy import Policy
from lram.verify.runners import GraphRunner

from .conftest import build_graph


@pytest.fixture(scope="module")
def native_graph(tmp_path_factory):
    return build_graph(tmp_path_factory.mktemp("bf16") / "native.onnx", flavour="native")


def test_only_the_mlstm_memories_become_bf16(native_graph, tmp_path):
    out = tmp_path / "bf16.onnx"
    info = write_state_bf16(native_graph, out)
    m32, m16 = read_manifest(native_graph), read_manifest(out)
    assert m16.precision == "bf16-state" and m16.flavour == "native"
    changed = {s.name for s in m16.state if s.dtype == "bfloat16"}
    assert changed and changed == {s.name for s in m32.state if s.cell == "mlstm" and s.role == "memory"}
    assert sorted(changed) == info["bf16_states"]
    assert m16.state_bytes_per_robot < m32.state_bytes_per_robot
    g = onnx.load(out).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output]}
    for s in m16.state:
        want = TensorProto.BFLOAT16 if s.name in changed else TensorProto.FLOAT
        assert types[s.input] == want and types[s.output] == want, s.name


def test_the_runtime_steps_it_with_bf16_slots_close_to_fp32(native_graph, tmp_path):
    out = tmp_path / "bf16.onnx"
    write_state_bf16(native_graph, out)
    manifest = read_manifest(out)
    pol = Policy.load(out, n_robots=3, backend="ort-cpu")
    rng = np.random.default_rng(0)
    for t in range(30):
        act = pol.step(rng.uniform(-1, 1, (3, 3)).astype(np.float32), rtg=np.full(3, -100.0, np.float32),
                       prev_reward=rng.standard_normal(3).astype(np.float32), first=np.full(3, t == 0))
        assert np.isfinite(act).all()
    for s in manifest.state:
        assert pol.slots.state[s.name].dtype.name == s.dtype
    c = next(s for s in manifest.state if s.dtype == "bfloat16")
    assert np.abs(pol.slots.state[c.name].astype(np.float32)).max() > 0  # not vacuous: the memory moved
    # logits against the FP32 graph on the same inputs: close, and not identical (C really is rounded)
    diffs = []
    r32, r16 = GraphRunner(native_graph), GraphRunner(out)
    r32.reset(2)
    r16.reset(2)
    for t in range(40):
        x = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
        args = (x, np.full(2, -100, np.float32), rng.standard_normal(2).astype(np.float32), np.full(2, t == 0))
        a, b = r32.step(*args).logits, r16.step(*args).logits
        diffs.append(float(np.abs(a - b).max()) / max(1.0, float(np.abs(a).max())))
    assert 0 < max(diffs) < 0.05


def test_refuses_what_it_cannot_convert(fp32_graph, native_graph, tmp_path):
    with pytest.raises(GraphError, match="native flavour"):
        write_state_bf16(fp32_graph, tmp_path / "x.onnx")  # the standard flavour: C runs inside ONNX Runtime
    once = tmp_path / "once.onnx"
    write_state_bf16(native_graph, once)
    with pytest.raises(GraphError, match="already bf16-state"):
        write_state_bf16(once, tmp_path / "twice.onnx")
