"""A new cell type is one block-step class (its math and its state declaration): this test-only toy cell goes
through export, the manifest, the runtime, verify and the state error without any other file knowing it."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from lram.export.cells import StatePart, token_masks
from lram.export.onnx_export import export_graph
from lram.export.step_graph import StepGraph
from lram.runtime.model_files import read_manifest
from lram.runtime.policy import Policy
from lram.verify.parity import verify
from lram.verify.runners import GraphRunner, StepModuleRunner


class LeakyBlockStep(nn.Module):
    """A stabilised leaky accumulator: acc holds sum_t decay^(T-t) u_t in the scale exp(mx)."""

    kind = "leaky"

    def __init__(self, H: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.H = H
        self.w = nn.Parameter(torch.randn(H, H, generator=g) / H ** 0.5, requires_grad=False)
        self.decay = nn.Parameter(torch.rand(H, generator=g) * 0.5 - 1.0, requires_grad=False)  # log decay

    def state_parts(self):
        return (StatePart("acc", (self.H,), "memory", "mx"), StatePart("mx", (self.H,), "stabiliser"),
                StatePart("last", (self.H,), "hidden"))

    def forward(self, x, valid0, T: int, acc, mx, last):
        tok, _ = token_masks(valid0, T)
        ys = []
        for t in range(T):
            u = torch.tanh(torch.matmul(x[:, t], self.w)) + 1.5  # > 0: a log-domain input
            m_new = torch.maximum(mx + self.decay, torch.log(u))
            a_new = torch.exp(mx + self.decay - m_new) * acc + torch.exp(torch.log(u) - m_new)
            keep = tok[:, t]  # an invalid token leaves the state as it was
            acc, mx, last = (keep * a_new + (1 - keep) * acc, keep * m_new + (1 - keep) * mx,
                             keep * u + (1 - keep) * last)
            ys.append(acc * torch.exp(mx) * 0.01 + last)
        return x + torch.stack(ys, dim=1), (acc, mx, last)


@pytest.fixture
def toy(make, tmp_path):
    model = make("tiny", seed=11)
    graph = StepGraph(model)
    graph.blocks[1] = LeakyBlockStep(model.config.embedding_dim, seed=3)  # replaces the sLSTM block
    return graph, export_graph(graph, tmp_path / "toy.onnx")


def test_toy_cell_exports_with_its_declared_state(toy):
    graph, path = toy
    manifest = read_manifest(path)
    toy_state = [s for s in manifest.state if s.block == 1]
    assert [(s.name, s.cell, s.role, s.stabiliser) for s in toy_state] == [
        ("1.acc", "leaky", "memory", "1.mx"), ("1.mx", "leaky", "stabiliser", None), ("1.last", "leaky", "hidden", None)]
    assert [s.cell for s in manifest.state if s.block == 0] == ["mlstm"] * 4


def test_toy_cell_runs_in_the_runtime_and_resets(toy):
    _, path = toy
    policy = Policy.load(path, n_robots=2)
    rng = np.random.default_rng(0)
    for t in range(5):
        policy.step(rng.standard_normal((2, 11)).astype(np.float32), rtg=np.full((2, 1), 100.0, np.float32),
                    prev_reward=np.ones((2, 1), np.float32), first=np.array([t == 0] * 2))
    assert np.abs(policy.slots.state["1.acc"]).min() > 0
    policy.reset(1)
    assert not policy.slots.state["1.acc"][1].any() and policy.slots.state["1.acc"][0].all()


def test_toy_cell_verifies_against_its_step_module_with_the_state_compared(toy):
    graph, path = toy
    report = verify(GraphRunner(path), StepModuleRunner(graph), steps=60, robots=3, env_id="", window=30)
    assert report.passed, report.failures
    assert report.max_state_error is not None and report.max_state_error < 1e-5
    # a wrong toy memory is caught by the state comparison of the declared roles
    bad = copy.deepcopy(graph)
    with torch.no_grad():
        bad.blocks[1].w.mul_(-1.0)
    report = verify(GraphRunner(path), StepModuleRunner(bad), steps=40, robots=2, env_id="", window=40,
                    atol=1e9, rtol=0.0)  # logits ungated in effect: the state alone must catch it
    assert not report.passed and report.max_state_error > 0.5, report.max_state_error
    assert any("state diverged" in f for f in report.failures)
