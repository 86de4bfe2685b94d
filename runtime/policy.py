"""A loaded step graph plus the recurrent state of N robots: ``step(obs, rtg, prev_reward, first) -> action``.

One call is one environment step for every robot (slot). Order of work per step: validate every input
(including the return-to-go the policy computes itself), run the graph once for the whole batch, check the
actions, and only then commit, per row, the new state, return sum and last action for rows whose inputs were
valid and whose action is finite. A failure anywhere before the commit leaves every robot as it was; the one
thing a refused or failed call keeps is an episode start it announced (``first``), so the robot's next
accepted step still starts from zero memory.

Threads: a Policy is safe to share. A robot node steps from its control thread while a service thread
resets a robot, takes a snapshot or restores one (a ROS 2 node with a reset service does exactly this), and
refusing the second thread would push every integrator into writing the same queue. So step, reset,
snapshot, restore, warmup and close hold one lock: each call sees and leaves a consistent state, and a reset
from another thread lands between two steps (it waits for at most one inference). The lock costs ~0.35 us
uncontended (measured); a step is tens of microseconds to milliseconds.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import make_backend
from .graph_check import check_graph_matches
from .input_checks import InputChecker, InputRejected, Rejection
from .manifest import Manifest, ManifestError
from .model_files import read_manifest
from .returns import ReturnTracker, check_target
from .safe_action import MISS_POLICIES, SafeAction
from .slots import Slots, Snapshot, robot_count
from .watchdog import BackendTimeout, Watchdog


@dataclass
class StepResult:
    action: np.ndarray  # [N, d] float32 or [N] int64; refused rows hold the safe action
    ok: np.ndarray  # [N] bool: True where the action came from the model and the state advanced
    rejected: dict  # slot -> Rejection
    rtg: np.ndarray  # [N, 1] the return-to-go that was fed (0 for refused rows)
    failure: tuple | None = None  # (kind, reason) when the backend gave no answer: "timeout" | "backend_error"


class PolicyStepFailed(RuntimeError):
    """The backend gave no answer (timeout or error); no state changed."""


class Policy:
    def __init__(self, backend, manifest: Manifest, n_robots: int = 1, miss_policy: str = "hold",
                 target_return: float | None = None, timeout_s: float | None = None):
        n = robot_count(n_robots)
        check_graph_matches(manifest, backend.inputs, backend.outputs, n_robots=n)
        max_batch = getattr(backend, "max_batch", None)  # a TensorRT engine's optimisation profile
        if isinstance(max_batch, int) and n > max_batch:
            raise ValueError(f"{getattr(backend, 'name', 'the backend')} takes at most {max_batch} robots, not {n} "
                             f"(rebuild the engine with --max-batch {n})")
        if target_return is not None:
            target = check_target(target_return, "target_return")
        elif manifest.target_return is not None:
            try:
                target = check_target(manifest.target_return, "the manifest's target_return")
            except ValueError as e:
                raise ManifestError(str(e)) from None
        else:
            target = None
        self.backend = backend
        self.manifest = manifest
        self.n = n
        self.slots = Slots(manifest.state, self.n)
        obs_in = next(t for t in manifest.inputs if t.name == "obs")
        self.checker = InputChecker(manifest.observation, self.n, obs_in.shape)
        self.returns = ReturnTracker(self.n, 0.0 if target is None else target)
        self.has_target = target is not None
        self.safe = SafeAction(miss_policy, manifest.action, self.n)
        act = manifest.action
        self._discrete = act.get("kind") == "discrete"
        self._low = None if self._discrete or act.get("low") is None else np.asarray(act["low"], np.float32)
        self._high = None if self._discrete or act.get("high") is None else np.asarray(act["high"], np.float32)
        self._lock = threading.RLock()
        self._closed = False
        self._watchdog = None
        self.set_timeout(timeout_s)

    @classmethod
    def load(cls, path: str | Path, n_robots: int = 1, backend: str = "auto", threads: int = 1,
             miss_policy: str = "hold", target_return: float | None = None) -> "Policy":
        n = robot_count(n_robots)  # before the (slow) session is built
        if target_return is not None:
            check_target(target_return, "target_return")
        be = make_backend(path, backend, threads)
        try:
            manifest = read_manifest(path, getattr(be, "metadata", None))
            return cls(be, manifest, n, miss_policy, target_return)
        except BaseException:
            be.close()
            raise

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError("this Policy is closed: load the model again to step it")

    # -- stepping -----------------------------------------------------------------------------------------
    def step(self, obs, rtg=None, prev_reward=0.0, first=False, strict: bool = False) -> np.ndarray:
        """Actions for all robots. Refused rows get the miss policy's action; ``strict`` raises InputRejected
        instead, before anything is committed (no row advances, nothing is counted). A backend with no answer
        (timeout, error) raises PolicyStepFailed; no state changes then."""
        result = self.step_detailed(obs, rtg, prev_reward, first, strict=strict)
        if result.failure is not None:
            raise PolicyStepFailed(f"{result.failure[0]}: {result.failure[1]}")
        return result.action

    def step_detailed(self, obs, rtg=None, prev_reward=0.0, first=False, strict: bool = False) -> StepResult:
        """Like ``step`` but says which rows were refused and why, and reports a backend that gave no answer
        in time (or failed) as ``failure``, with the safe action for every robot, instead of raising."""
        with self._lock:
            self._open()
            if rtg is None and not self.has_target:
                raise ValueError("no rtg given and no target return (the manifest has none): pass rtg or target_return")
            proposal = {}

            def own_rtg(first_a, rew):
                rtg_now, proposal["collected"] = self.returns.propose(rew, self.slots.first_flags(first_a))
                return rtg_now

            checked = self.checker.check(obs, rtg, prev_reward, first, rtg_for=own_rtg)
            ok = checked.ok
            if strict and checked.rejected:
                raise InputRejected(list(checked.rejected.values()))
            if not ok.any():
                self._remember_starts(checked.first)
                return StepResult(self.safe.fill(None, ok), ok, checked.rejected, checked.rtg)
            feeds = {"obs": checked.obs, "rtg": checked.rtg, "prev_reward": checked.prev_reward,
                     "first": self.slots.first_flags(checked.first)}
            feeds.update(self.slots.feeds())
            try:
                outputs = self._run(feeds)
            except Exception as e:  # a backend failure must cost one safe action, not the robot
                if not strict:
                    self._remember_starts(checked.first)
                none = np.zeros(self.n, bool)
                failure = ("timeout", str(e)) if isinstance(e, BackendTimeout) else ("backend_error", f"{type(e).__name__}: {e}")
                return StepResult(self.safe.fill(None, none), none, checked.rejected, checked.rtg, failure)
            except BaseException:
                if not strict:
                    self._remember_starts(checked.first)
                raise
            action = outputs["action"]
            if not self._discrete:
                finite = np.isfinite(action).all(axis=1)
                if not finite.all():
                    for i in np.flatnonzero(~finite & ok):
                        checked.rejected[int(i)] = Rejection(int(i), "output", "the model produced a non-finite action")
                    ok = ok & finite
                    if strict:
                        raise InputRejected(list(checked.rejected.values()))
                if self._low is not None:
                    action = np.clip(action, self._low, self._high)
            # the commit: every check of this call is behind us
            self.slots.commit(outputs, ok, checked.first)
            if "collected" in proposal:
                self.returns.commit(proposal["collected"], ok)
            all_ok = ok.all()
            self._reset_held(checked.first)
            self.safe.remember(action, ok, all_ok)
            return StepResult(action if all_ok else self.safe.fill(action, ok), ok, checked.rejected, checked.rtg)

    def _remember_starts(self, first: np.ndarray) -> None:
        """A refused or failed call still keeps the episode starts it announced (see the module docstring)."""
        self.slots.remember_starts(first)
        self._reset_held(first)

    def _reset_held(self, first: np.ndarray) -> None:
        for slot in np.flatnonzero(first):  # a new episode holds nothing from the last one
            self.safe.reset(int(slot))

    def warmup(self, steps: int = 10) -> None:
        """Run the graph on zero inputs and throw the result away: first calls allocate and pick kernels, and
        that must not land on the first real control tick. No state changes."""
        with self._lock:
            self._open()
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
        with self._lock:
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
        """Start a new episode for one robot (or all): zero state, restart its return sum (with a new target
        when given), forget its last action. Its next step is an episode start whatever ``first`` says.
        A bad slot or target is refused before anything changes."""
        with self._lock:
            self._open()
            slots = range(self.n) if slot is None else [self.slots.index(slot)]
            if target_return is not None:
                check_target(target_return, "target_return")
            for s in slots:
                self.slots.reset(s)
                self.returns.reset(s, target_return)
                self.safe.reset(s)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self.slots.snapshot({"returns": self.returns.state(), "last_action": self.safe.last.copy()})

    def restore(self, snap: Snapshot) -> None:
        """Continue from ``snap`` bit-identically. A snapshot that does not fit (another model, robot count,
        dtype) is refused with ValueError before anything changes."""
        with self._lock:
            self._open()
            self.slots.check(snap)
            extra = snap.extra if isinstance(snap.extra, dict) else {}
            if "returns" in extra:
                self.returns.check_state(extra["returns"])
            last = extra.get("last_action")
            if last is not None and (not isinstance(last, np.ndarray) or last.shape != self.safe.last.shape
                                     or last.dtype != self.safe.last.dtype):
                raise ValueError(f"snapshot last_action is {getattr(last, 'dtype', type(last).__name__)} "
                                 f"{getattr(last, 'shape', '')}, expected {self.safe.last.dtype} {self.safe.last.shape}")
            self.slots.restore(snap)
            if "returns" in extra:
                self.returns.load(extra["returns"])
            if last is not None:
                self.safe.last = last.copy()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.set_timeout(None)
                self.backend.close()
