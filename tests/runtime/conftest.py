"""Fixtures for the runtime tests: fake step graphs built with onnx.helper (no exporter, no torch)."""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest

_HERE = Path(__file__).parent


def _load_fake():
    # loaded under a unique name: other test folders may have their own "fake_policy" module
    name = "lram_tests_runtime_fake_policy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _HERE / "fake_policy.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="session")
def fake():
    return _load_fake()


@pytest.fixture(scope="session")
def pendulum_model(tmp_path_factory, fake):
    """3-dim obs, 1-dim action in [-2, 2]: fits gym Pendulum-v1."""
    return fake.write_pendulum_policy(tmp_path_factory.mktemp("models") / "pendulum.onnx")


@pytest.fixture
def make_policy(pendulum_model):
    from lram.runtime.policy import Policy

    made = []

    def _make(n=2, path=None, **kw):
        p = Policy.load(path or pendulum_model, n_robots=n, backend="ort-cpu", threads=1, **kw)
        made.append(p)
        return p

    yield _make
    for p in made:
        p.close()


def obs_batch(n, seed=0):
    """Valid pendulum observations (cos, sin, angular velocity)."""
    rng = np.random.default_rng(seed)
    th = rng.uniform(-np.pi, np.pi, n)
    return np.stack([np.cos(th), np.sin(th), rng.uniform(-8, 8, n)], axis=1).astype(np.float32)


class FakeClock:
    """Time that only moves when the code under test sleeps or 'works' (``advance``)."""

    def __init__(self, t0: float = 1000.0):
        self.now = t0
        self.sleeps = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        assert dt >= 0, "the loop asked to sleep a negative time"
        self.sleeps.append(dt)
        self.now += dt

    def advance(self, dt: float) -> None:
        self.now += dt


class ScriptedBackend:
    """Wraps a real backend; on chosen calls raises or stalls, to test the loop's fault handling."""

    def __init__(self, inner, fail_on=(), stall_on=(), stall_s=0.5, clock=None, cost_s=0.0):
        self.inner = inner
        self.name, self.inputs, self.outputs, self.metadata = "scripted", inner.inputs, inner.outputs, inner.metadata
        self.fail_on, self.stall_on, self.stall_s = set(fail_on), set(stall_on), stall_s
        self.clock, self.cost_s = clock, cost_s
        self.calls = 0

    def run(self, feeds):
        i = self.calls
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.cost_s)
        if i in self.fail_on:
            raise RuntimeError(f"injected backend failure on call {i}")
        if i in self.stall_on:
            time.sleep(self.stall_s)
        return self.inner.run(feeds)

    def close(self):
        self.inner.close()


@pytest.fixture
def helpers():
    class H:
        pass

    h = H()
    h.obs_batch, h.FakeClock, h.ScriptedBackend = obs_batch, FakeClock, ScriptedBackend
    return h
