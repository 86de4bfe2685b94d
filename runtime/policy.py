"""A loaded step graph plus the recurrent state of N robots: ``step(obs, rtg, prev_reward, first) -> action``.

One call is one environment step for every robot (slot). Order of work per step: validate the inputs, run the
graph once for the whole batch, then commit the new state only for rows whose inputs were valid and whose
action is finite. A failure anywhere before the commit leaves every robot's state exactly as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import make_backend
from .graph_check import check_graph_matches
from .input_checks import InputChecker, InputRejected, Rejection, column
from .manifest import Manifest
from .model_files import read_manifest
from .returns import ReturnTracker
from .safe_action import MISS_POLICIES, SafeAction
from .slots import Slots, Snapshot
from .watchdog import BackendTimeout, Watchdog


@dataclass
class StepResult:
    action: np.ndarray  # [N, d] float32 or [N] int64; refused rows hold the safe action
    ok: np.ndarray  # [N] bool: True where the action came from the model and the state advanced
    rejected: dict  # slot -> Rejection
    rtg: np.ndarray  # [N, 1] the return-to-go that was fed
    failure: tuple | None = None  # (kind, reason) when the backend gave no answer: "timeout" | "backend_error"


class PolicyStepFailed(RuntimeError):
    """The backend gave no answer (timeout or error); no state changed."""


class Policy:
    def __init__(self, backend, manifest: Manifest, n_robots: int = 1, miss_policy: str = "hold",
                 target_return: float | None = None, timeout_s: float | None = None):
        check_graph_matches(manifest, backend.inputs, backend.outputs)
        self.backend = backend
        self.manifest = manifest
        self.n = int(n_robots)
        self.slots = Slots(manifest.state, self.n)
        obs_in = next(t for t in manifest.inputs if t.name == "obs")
        self.checker = InputChecker(manifest.observation, self.n, obs_in.shape)
        target = target_return if target_return is not None else manifest.target_return
        self.returns = ReturnTracker(self.n, 0.0 if target is None else target)
        self.has_target = target is not None
        self.safe = SafeAction(miss_policy, manifest.action, self.n)
        self._watchdog = None
        self.set_timeout(timeout_s)
        act = manifest.action
        self._discrete = act.get("kind") == "discrete"
        self._low = None if self._discrete or act.get("low") is None else np.asarray(act["low"], np.float32)
        self._high = None if self._discrete or act.get("high") is None else np.asarray(act["high"], np.float32)

    @classmethod
    def load(cls, path: str | Path, n_robots: int = 1, backend: str = "auto", threads: int = 1,
             miss_policy: str = "hold", target_return: float | None = None) -> "Policy":
        be = make_backend(path, backend, threads)
        manifest = read_manifest(path, getattr(be, "metadata", None))
        return cls(be, manifest, n_robots, miss_policy, target_return)

    # -- stepping -----------------------------------------------------------------------------------------
    def step(self, obs, rtg=None, prev_reward=0.0, first=False, strict: bool = False) -> np.ndarray:
        """Actions for all robots. Refused rows get the miss policy's action; ``strict`` raises instead. A
        backend with no answer (timeout, error) raises PolicyStepFailed; no state changes then."""
        result = self.step_detailed(obs, rtg, prev_reward, first)
        if result.failure is not None:
            raise PolicyStepFailed(f"{result.failure[0]}: {result.failure[1]}")
        if strict and result.rejected:
            raise InputRejected(list(result.rejected.values()))
        return result.action

    def step_detailed(self, obs, rtg=None, prev_reward=0.0, first=False) -> StepResult:
        """Like ``step`` but says which rows were refused and why, and reports a backend that gave no answer
        in time (or failed) as ``failure`` with the safe action for every robot, instead of raising."""
        checked = self.checker.check(obs, 0.0 if rtg is None else rtg, prev_reward, first)
        first_eff = self.slots.first_flags(checked.first)
        for slot in np.flatnonzero(checked.first):  # a new episode holds nothing from the last one
            self.safe.reset(int(slot))
        if rtg is None:
            if not self.has_target:
                raise ValueError("no rtg given and no target return (the manifest has none): pass rtg or target_return")
            # Rewards are real even when a step is refused, so the raw reward is counted (non-finite ones are
            # skipped by the tracker); the caller's own first flag restarts the sum.
            raw = column(prev_reward, self.n)
            if raw is not None:
                rtg_now = self.returns.observe(raw, checked.first)
                checked.rtg = rtg_now if not checked.rejected else np.where(checked.ok[:, None], rtg_now, np.float32(0))
        ok = checked.ok
        if not ok.any():
            return StepResult(self.safe.fill(None, ok), ok, checked.rejected, checked.rtg)
        feeds = {"obs": checked.obs, "rtg": checked.rtg, "prev_reward": checked.prev_reward, "first": first_eff}
        feeds.update(self.slots.feeds())
        try:
            outputs = self._run(feeds)
        except BackendTimeout as e:
            return StepResult(self.miss_action(), np.zeros(self.n, bool), checked.rejected, checked.rtg, ("timeout", str(e)))
        except Exception as e:  # a backend failure must cost one safe action, not the robot
            return StepResult(self.miss_action(), np.zeros(self.n, bool), checked.rejected, checked.rtg,
                              ("backend_error", f"{type(e).__name__}: {e}"))
        action = outputs["action"]
        if not self._discrete:
            finite = np.isfinite(action).all(axis=1)
            if not finite.all():
                for i in np.flatnonzero(~finite & ok):
                    checked.rejected[int(i)] = Rejection(int(i), "output", "the model produced a non-finite action")
                ok = ok & finite
            if self._low is not None:
                action = np.clip(action, self._low, self._high)
        self.slots.commit(outputs, ok)
        all_ok = ok.all()
        self.safe.remember(action, ok, all_ok)
        return StepResult(action if all_ok else self.safe.fill(action, ok), ok, checked.rejected, checked.rtg)

    def warmup(self, steps: int = 10) -> None:
        """Run the graph on zero inputs and throw the result away: first calls allocate and pick kernels, and
        that must not land on the first real control tick. No state changes."""
        feeds = {"obs": np.zeros((self.n,) + self.checker.graph_shape, self.checker.dtype),
                 "rtg": np.zeros((self.n, 1), np.float32), "prev_reward": np.zeros((self.n, 1), np.float32),
                 "first": np.ones(self.n, bool)}
        feeds.update({s.input: np.zeros_like(self.slots.state[s.name]) for s in self.manifest.state})
        for _ in range(steps):
            self.backend.run(feeds)

    # -- misses and timeouts -------------------------------------------------------------------------------
    def set_timeout(self, seconds: float | None) -> None:
        """Give the backend at most ``seconds`` per step (None: no limit). A stalled call then costs one safe
        action (``failure`` "timeout") instead of freezing the caller; see watchdog.py."""
        if self._watchdog is not None:
            self._watchdog.close()
        self._watchdog = Watchdog(self.backend.run, seconds) if seconds else None
        self.timeout_s = seconds or None

    def _run(self, feeds: dict) -> dict:
        return self._watchdog(feeds) if self._watchdog is not None else self.backend.run(feeds)

    @property
    def backend_name(self) -> str:
        return getattr(self.backend, "name", type(self.backend).__name__)

    @property
    def miss_policy(self) -> str:
        return self.safe.policy

    def set_miss_policy(self, name: str) -> None:
        if name not in MISS_POLICIES:
            raise ValueError(f"unknown miss policy {name!r}; choose one of {', '.join(MISS_POLICIES)}")
        self.safe.policy = name

    @property
    def stops_on_miss(self) -> bool:
        """The miss policy says: after a miss, stop the loop."""
        return self.safe.stops

    def miss_action(self) -> np.ndarray:
        """The safe action for every robot (what a tick without the model's answer sends)."""
        return self.safe.fill(None, np.zeros(self.n, bool))

    # -- state management ---------------------------------------------------------------------------------
    def reset(self, slot: int | None = None, target_return: float | None = None) -> None:
        """Start a new episode for one robot (or all): zero state, restart its return sum, forget its last action."""
        slots = range(self.n) if slot is None else [slot]
        for s in slots:
            self.slots.reset(s)
            self.returns.reset(s, target_return)
            self.safe.reset(s)

    def snapshot(self) -> Snapshot:
        return self.slots.snapshot({"returns": self.returns.state(), "last_action": self.safe.last.copy()})

    def restore(self, snap: Snapshot) -> None:
        self.slots.restore(snap)
        if "returns" in snap.extra:
            self.returns.load(snap.extra["returns"])
        if "last_action" in snap.extra:
            self.safe.last = snap.extra["last_action"].copy()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        self.backend.close()
