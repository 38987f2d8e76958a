"""Memory budgets shared by all crawler processes of one crawl: what a hostile server can make us hold.

Two budgets, in bytes, each one counter in shared memory:

- ``bodies``: downloaded bodies, from the moment the headers say how big one may get until its image is
  processed. A download reserves before reading (twice the Content-Length, or twice the byte cap when
  the length is unknown or the body is compressed: the pieces and their join coexist for a moment) and
  shrinks the reservation to the real size once it is assembled. It waits for room inside its own
  deadline, so a flood of big bodies slows downloads instead of growing memory.
- ``pixels``: decoded pixels. An image reserves its estimated peak (``imaging.decode_cost``) from the
  header, before any pixel is decoded, and waits in its imaging thread until there is room.

A request larger than the whole budget is clamped to it: it runs when it has the budget to itself.
Separate budgets cannot deadlock: a body waits only for bodies, which drain through imaging, and
imaging waits only for other images, which finish.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from dataclasses import dataclass

_POLL_S = (0.001, 0.05)  # first and longest wait between tries


class _LocalCounter:
    """``multiprocessing.Value``'s interface for a budget used by one process only (no semaphore, so
    no resource-tracker process for a crawl that never spawns)."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


class Budget:
    """A byte counter, shared between processes when made with a ``multiprocessing`` context ``ctx``
    (pass it to them at spawn time), else local to this process."""

    def __init__(self, capacity: int, ctx=None) -> None:
        self.capacity = max(1, int(capacity))
        self._used = ctx.Value("q", 0) if ctx is not None else _LocalCounter()

    @property
    def used(self) -> int:
        return self._used.value

    def clamp(self, n: int) -> int:
        return max(0, min(int(n), self.capacity))

    def try_take(self, n: int) -> bool:
        """Reserve ``n`` (clamped) bytes if they fit now."""
        n = self.clamp(n)
        with self._used.get_lock():
            if self._used.value + n > self.capacity:
                return False
            self._used.value += n
            return True

    def give(self, n: int) -> None:
        n = self.clamp(n)
        with self._used.get_lock():
            self._used.value = max(0, self._used.value - n)

    async def take(self, n: int) -> None:
        """Reserve ``n`` bytes, waiting (without blocking the event loop) until they fit."""
        wait = _POLL_S[0]
        while not self.try_take(n):
            await asyncio.sleep(wait)
            wait = min(_POLL_S[1], wait * 2)

    def take_blocking(self, n: int, cancelled: threading.Event | None = None) -> None:
        """Reserve ``n`` bytes from a worker thread; raise ``Cancelled`` if ``cancelled`` is set first."""
        wait = _POLL_S[0]
        while not self.try_take(n):
            if cancelled is not None and cancelled.wait(wait):
                raise Cancelled("crawl stopping")
            if cancelled is None:
                time.sleep(wait)
            wait = min(_POLL_S[1], wait * 2)


class Cancelled(Exception):
    """The crawl is stopping while a worker waited for its budget."""


class Reservation:
    """Bytes one request holds in a ``Budget``; ``resize`` grows (waiting) or shrinks it."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.held = 0

    async def resize(self, n: int) -> None:
        n = self.budget.clamp(n)
        if n > self.held:
            await self.budget.take(n - self.held)
        elif n < self.held:
            self.budget.give(self.held - n)
        self.held = n

    def release(self) -> None:
        if self.held:
            self.budget.give(self.held)
            self.held = 0


@dataclass
class Budgets:
    """The crawl's two budgets (see the module docstring)."""

    bodies: Budget
    pixels: Budget

    @classmethod
    def create(cls, body_memory: int, decode_memory: int, shared: bool = True) -> Budgets:
        """``shared``: the crawl spawns crawler processes that must see the same counters."""
        ctx = multiprocessing.get_context("spawn") if shared else None
        return cls(Budget(body_memory, ctx), Budget(decode_memory, ctx))
