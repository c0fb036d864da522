"""A process-wide budget of bytes for decoding images, shared by concurrent uploads.

A count of decode slots does not bound memory: four 16-bit 4096x4096 PNGs need far more than
four 128x128 crops. Each upload instead reserves the bytes its images will need once decoded
(estimated from their headers, before any pixel is decoded) and gives them back when done.
Waiters are served first come, first served, so a big image is not starved by a stream of
small ones; a reservation that cannot start within its timeout raises `BudgetBusy`, and one
larger than the whole budget raises `BudgetTooSmall` at once (it could never fit).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class BudgetBusy(Exception):
    """The bytes did not become free within the timeout."""


class BudgetTooSmall(Exception):
    """More bytes were asked for than the whole budget holds."""


class DecodeBudget:
    """`capacity` bytes, handed out by `reserve(n)` in arrival order."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._in_use = 0
        self._queue: deque[object] = deque()  # waiting reservations, oldest first
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._in_use

    @contextmanager
    def reserve(self, nbytes: int, timeout: float) -> Iterator[None]:
        """Hold `nbytes` of the budget for the `with` block (waits at most `timeout` seconds)."""
        if nbytes > self.capacity:
            raise BudgetTooSmall(nbytes)
        nbytes = max(0, nbytes)
        ticket = object()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._queue.append(ticket)
            try:
                while not (self._queue[0] is ticket and self._in_use + nbytes <= self.capacity):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BudgetBusy(nbytes)
                    self._cond.wait(left)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may fit now
            self._in_use += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= nbytes
                self._cond.notify_all()
