"""Bounds on work that holds a server thread (agent calls, synchronous waits, event streams).

A request beyond a bound is refused at once (Busy: HTTP 503 with Retry-After, gRPC UNAVAILABLE) instead of taking a
thread, so the servers always keep threads for /health, /metrics and quick requests.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from manager_api.errors import Busy


class Gate:
    def __init__(self, what: str, limit: int, retry_after: int) -> None:
        self.what = what
        self.limit = limit
        self.retry_after = retry_after
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def enter(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise Busy(self.what, self.limit, self.retry_after)
        try:
            yield
        finally:
            self._slots.release()
