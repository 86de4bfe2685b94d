"""Anything that can step a policy, behind one small interface (in the spirit of Polygraphy's runners).

A runner carries the recurrent state of ``robots`` rows and advances it one environment step per call:

    runner.reset(robots)
    out = runner.step(obs, rtg, prev_reward, first)   # arrays [robots, ...]; rtg / prev_reward [robots] raw
    out.logits [robots, 8, 274]; out.action (as the runner decodes it); out.state {name: array} or None

Runners: the PyTorch checkpoint through the xlstm package's own step() (float64 or float32), the exported step
module in PyTorch, and any graph (FP32, FP16, INT8, any flavour) or engine on any runtime backend. What is
compared, and how, is lram.verify.compare; the driving inputs are lram.verify.feeds.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from lram.model.action_head import decode_logits
from lram.model.config import TaskSpec, config_hash
from lram.model.lram import LRAM
from lram.runtime.manifest import StateSpec


class RunnerError(ValueError):
    """A runner cannot be built from what was given."""


@dataclass
class StepOutput:
    logits: np.ndarray | None  # [B, 8, 274]; None for a graph exported without them
    action: np.ndarray  # decoded by the runner itself (in the graph, for a graph runner)
    state: dict | None  # name -> [B, ...] after the step, named as the manifest names them; None if not exposed


class Runner(Protocol):
    name: str
    task: TaskSpec
    precision: str  # "fp64", "fp32", "fp16", "int8"
    config_hash: str
    state_specs: list | None  # StateSpec list when ``StepOutput.state`` is given
    seconds: list  # wall time of each step call

    def reset(self, robots: int) -> None: ...

    def step(self, obs, rtg, prev_reward, first) -> StepOutput: ...

    def close(self) -> None: ...


def _timed(fn):
    def wrapper(self, *args):
        t = time.perf_counter()
        out = fn(self, *args)
        self.seconds.append(time.perf_counter() - t)
        return out
    return wrapper


class CheckpointRunner:
    """The PyTorch model through the xlstm package's step() (three token calls per env step, as the reference
    code runs it). float64 measures an fp32 implementation's own error; its state stays in the package's layout."""

    state_specs = None

    def __init__(self, model: LRAM, dtype: torch.dtype = torch.float64, name: str = "checkpoint"):
        self.model = copy.deepcopy(model).to(dtype).eval()
        self.dtype, self.task = dtype, model.task
        self.precision = "fp64" if dtype == torch.float64 else "fp32"
        self.name = f"{name} (PyTorch {self.precision})"
        self.config_hash = config_hash(model.config, model.task)
        self.seconds: list = []
        self._state = None

    def reset(self, robots: int) -> None:
        self._state = {blk: {k: tuple(t.to(self.dtype) for t in v) if isinstance(v, tuple) else v.to(self.dtype)
                             for k, v in parts.items()} for blk, parts in self.model.init_state(robots).items()}

    @_timed
    def step(self, obs, rtg, prev_reward, first) -> StepOutput:
        as_t = lambda a: torch.from_numpy(np.asarray(a, np.float64)).to(self.dtype)  # noqa: E731
        o = torch.from_numpy(obs) if obs.dtype == np.uint8 else as_t(obs)
        with torch.no_grad():
            logits, self._state = self.model.step(o, as_t(rtg), as_t(prev_reward), torch.from_numpy(np.asarray(first)),
                                                  self._state)
            action = decode_logits(logits, self.task)
        return StepOutput(logits.numpy(), action.numpy(), None)

    def close(self) -> None:
        self._state = None


class StepModuleRunner:
    """The exported step module (export.step_graph.StepGraph) run in PyTorch: the graph's math before ONNX."""

    def __init__(self, graph, dtype: torch.dtype = torch.float64, name: str = "step module"):
        self.graph = copy.deepcopy(graph).to(dtype).eval()
        self.dtype, self.task = dtype, graph.task
        self.precision = "fp64" if dtype == torch.float64 else "fp32"
        self.name = f"{name} (PyTorch {self.precision})"
        self.config_hash = config_hash(graph.config, graph.task)
        self.state_specs = graph.state
        self.seconds: list = []
        self._state = None

    def reset(self, robots: int) -> None:
        self._state = [torch.zeros(robots, *s.shape, dtype=self.dtype) for s in self.state_specs]

    @_timed
    def step(self, obs, rtg, prev_reward, first) -> StepOutput:
        as_t = lambda a: torch.from_numpy(np.asarray(a, np.float64)).to(self.dtype)  # noqa: E731
        o = torch.from_numpy(obs) if obs.dtype == np.uint8 else as_t(obs)
        with torch.no_grad():
            action, logits, *state = self.graph(o, as_t(rtg)[:, None], as_t(prev_reward)[:, None],
                                                torch.from_numpy(np.asarray(first, bool)), *self._state)
        self._state = state
        return StepOutput(logits.numpy(), action.numpy(),
                          {s.name: t.numpy() for s, t in zip(self.state_specs, state)})

    def close(self) -> None:
        self._state = None


class GraphRunner:
    """An exported graph or a compiled engine on a runtime backend (ONNX Runtime, TensorRT), fed exactly the
    given inputs (no input checks, no return bookkeeping: that is the Policy's job, not the comparison's)."""

    def __init__(self, path: str | Path, backend: str = "ort-cpu", threads: int = 1):
        from lram.runtime.backends import make_backend
        from lram.runtime.model_files import read_manifest

        self.path = Path(path)
        self.backend = make_backend(self.path, backend, threads)
        self.manifest = read_manifest(self.path, getattr(self.backend, "metadata", None))
        self.has_logits = "logits" in {o.name for o in self.backend.outputs}
        try:
            self.task = TaskSpec.from_dict(self.manifest.model["task"])
        except (KeyError, TypeError, ValueError) as e:
            raise RunnerError(f"{path}: the manifest does not describe the task ({e})") from None
        self.precision = self.manifest.precision
        self.config_hash = self.manifest.model.get("config_hash", "")
        self.state_specs: list[StateSpec] = list(self.manifest.state)
        self.name = f"{self.path.name} ({self.manifest.flavour}, {self.precision}, {self.backend.name})"
        obs = next(t for t in self.manifest.inputs if t.name == "obs")
        self._obs_dtype = np.dtype(obs.dtype)
        self.seconds: list = []
        self._state = None

    def reset(self, robots: int) -> None:
        self._state = {s.name: np.zeros((robots, *s.shape), s.dtype) for s in self.state_specs}

    def feeds(self, obs, rtg, prev_reward, first) -> dict:
        """The graph's exact inputs for this step, the carried state included (what calibration records)."""
        f32 = lambda a: np.asarray(a, np.float32).reshape(-1, 1)  # noqa: E731
        feeds = {"obs": np.ascontiguousarray(obs, self._obs_dtype), "rtg": f32(rtg), "prev_reward": f32(prev_reward),
                 "first": np.asarray(first, bool)}
        feeds.update({s.input: self._state[s.name] for s in self.state_specs})
        return feeds

    @_timed
    def step(self, obs, rtg, prev_reward, first) -> StepOutput:
        out = self.backend.run(self.feeds(obs, rtg, prev_reward, first))
        self._state = {s.name: out[s.output] for s in self.state_specs}
        return StepOutput(out.get("logits"), out["action"], dict(self._state))

    def close(self) -> None:
        self.backend.close()


GRAPH_SUFFIXES = (".onnx", ".engine", ".plan", ".trt")


def is_graph(path: str | Path) -> bool:
    """A graph or engine file (anything else is taken for a checkpoint)."""
    return Path(path).suffix.lower() in GRAPH_SUFFIXES
