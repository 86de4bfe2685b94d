"""Fixtures for the calibration tests: a perturbed tiny [7:1] model for gym:Pendulum-v1 (fast simulator),
exported once per session, its calibration data and its FP16 / INT8 conversions."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

torch.set_num_threads(1)

PENDULUM_TASK = dict(obs_kind="state", obs_shape=(3,), action_kind="continuous", action_dim=1, action_low=(-2.0,),
                     action_high=(2.0,), reward_scale=100.0, target_return=-150.0, name="gym:Pendulum-v1")


def build_graph(path, preset_name="tiny", task=None, seed=0, scale=0.1, flavour="standard"):
    from lram.export.onnx_export import export_onnx
    from lram.model.config import TaskSpec, preset
    from lram.model.lram import LRAM

    task = TaskSpec(**(task or PENDULUM_TASK))
    torch.manual_seed(seed)
    model = LRAM(preset(preset_name, encoders=("state",)), task)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # never the stock init: it zeroes gates and recurrent weights
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return export_onnx(model.eval(), path, flavour=flavour)


def scramble(src, dst):
    """A deliberately broken copy: every weight matrix off the recurrence shuffled (manifest kept)."""
    from lram.calibration.graph import weight_matmuls
    from lram.runtime.model_files import read_manifest

    m = onnx.load(str(src))
    rec = {w.weight for w in weight_matmuls(m, read_manifest(src)) if w.recurrent}
    names = {n.input[1] for n in m.graph.node if n.op_type == "MatMul" and len(n.input) == 2} - rec
    rng = np.random.default_rng(0)
    for init in m.graph.initializer:
        if init.name in names:
            a = numpy_helper.to_array(init).copy()
            flat = a.reshape(-1)
            rng.shuffle(flat)
            init.CopyFrom(numpy_helper.from_array(flat.reshape(a.shape) * 3.0, init.name))
    onnx.save(m, str(dst))
    return dst


@pytest.fixture(scope="session")
def fp32_graph(tmp_path_factory):
    return build_graph(tmp_path_factory.mktemp("cal") / "pendulum.onnx")


@pytest.fixture(scope="session")
def calib(fp32_graph):
    from lram.calibration.record import record

    return record(fp32_graph, episodes=4, samples=64, max_steps=80)


@pytest.fixture(scope="session")
def fp16_graph(fp32_graph):
    from lram.calibration.fp16 import write_fp16

    out = fp32_graph.with_name("pendulum_fp16.onnx")
    write_fp16(fp32_graph, out)
    return out


@pytest.fixture(scope="session")
def int8_graph(fp32_graph, calib):
    from lram.calibration.int8 import write_int8

    out = fp32_graph.with_name("pendulum_int8.onnx")
    write_int8(fp32_graph, out, calib, min_elements=1024)  # the tiny model's weights are small
    return out


def run_side_by_side(path_a, path_b, calib, steps=200):
    """Both graphs fed the recorded inputs in a loop, each carrying its own state: (max logit diff, max rel state err)."""
    from lram.verify.runners import GraphRunner

    a, b = GraphRunner(path_a), GraphRunner(path_b)
    a.reset(1)
    b.reset(1)
    worst_logit = 0.0
    for t in range(steps):
        i = t % len(calib)
        feeds = (calib.inputs["obs"][i:i + 1], calib.inputs["rtg"][i:i + 1, 0], calib.inputs["prev_reward"][i:i + 1, 0],
                 np.array([t == 0]))
        oa, ob = a.step(*feeds), b.step(*feeds)
        worst_logit = max(worst_logit, float(np.abs(oa.logits - ob.logits).max()))
    worst_state = 0.0
    for spec in a.state_specs:
        ref = np.linalg.norm(oa.state[spec.name])
        worst_state = max(worst_state, float(np.linalg.norm(oa.state[spec.name] - ob.state[spec.name]) / max(ref, 1e-6)))
    return worst_logit, worst_state
