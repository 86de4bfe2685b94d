"""Run inference with a time limit, so a stalled backend (driver hang, GPU reset, swapped-out weights) costs
one safe action instead of freezing the robot's control loop.

The call runs in one worker thread. On timeout the loop moves on; the stalled call keeps running in the
background and its result is discarded (the policy commits state only from results it received, so a late
answer can never overwrite newer state). While it is still stuck, further calls fail at once rather than
piling up threads on a backend that is not answering.
"""
from __future__ import annotations

import concurrent.futures as cf


class BackendTimeout(RuntimeError):
    """The backend did not answer within the watchdog's limit."""


class Watchdog:
    def __init__(self, run, timeout_s: float):
        self.run = run
        self.timeout_s = float(timeout_s)
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lram-infer")
        self._pending: cf.Future | None = None

    def __call__(self, feeds: dict) -> dict:
        if self._pending is not None and not self._pending.done():
            raise BackendTimeout("backend is still busy with an earlier call that timed out")
        fut = self._pool.submit(self.run, feeds)
        self._pending = fut
        try:
            return fut.result(timeout=self.timeout_s)
        except cf.TimeoutError:
            raise BackendTimeout(f"backend did not answer within {self.timeout_s * 1e3:.1f} ms") from None

    def close(self) -> None:
        # do not wait: the worker may be the stalled call we are walking away from
        self._pool.shutdown(wait=False, cancel_futures=True)
