"""SIGTERM handled like Ctrl-C: a service manager (systemd, docker stop, a ROS launch file) stops a process
with SIGTERM, whose default action kills it without a word, losing the run's report. Inside
``terminate_as_interrupt`` SIGTERM raises ``Terminated``, a KeyboardInterrupt, so every place that already
ends cleanly on Ctrl-C (the control loop's report) does the same on SIGTERM."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    stop_reason = "terminated"
    exit_code = 128 + signal.SIGTERM


def _raise(signum, frame):
    raise Terminated()


@contextmanager
def terminate_as_interrupt():
    """Only the main thread can own a signal handler; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
