"""Ctrl-C for long jobs that must stop at a consistent point (training, bag conversion): SIGINT and SIGTERM
become a flag that the job checks between units of work, so an interruption is never lost and never lands
half-way through a write."""
from __future__ import annotations

import signal
import threading
from typing import Any


class InterruptFlag:
    """While entered (in the main thread), SIGINT and SIGTERM set `requested` instead of raising; the previous
    handlers come back on exit. Entered from another thread it installs nothing (signals go to the main thread)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
