"""Progress lines a person can follow in a log: ``what: done/total unit (pct), rate/s, ETA, elapsed``.

Long steps (a ranged run over shards, a chunked backfill, a crawl) report through these at a sensible
cadence: at most one line every ``every`` seconds, plus one when all is done.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def duration_text(seconds: float) -> str:
    """``45s``, ``3m20s``, ``2h05m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLine:
    """``what: 120/500 shards (24%), 0.80/s, ETA 7m55s, elapsed 2m30s (extra)``.

    ``update(done)`` takes the absolute count, ``step(n)`` adds to it; a line goes to ``out`` at most every
    ``every`` seconds and always when ``done`` reaches ``total`` (or on ``finish()``). ``total`` may grow
    while the work runs (a backfill learns its size from the server)."""

    def __init__(self, what: str, total: int, unit: str, *, every: float = 10.0,
                 out: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.out, self.clock = out, clock
        self.started = clock()
        self.last_out = -math.inf
        self.done = 0

    def line(self, extra: str = "") -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = duration_text((self.total - self.done) / rate) if rate > 0 and self.done < self.total else "-"
        text = (f"{self.what}: {self.done:,}/{self.total:,} {self.unit}{pct}, {rate:,.{1 if rate >= 10 else 2}f}/s, "
                f"ETA {eta}, elapsed {duration_text(elapsed)}")
        return f"{text} ({extra})" if extra else text

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        now = self.clock()
        if done >= self.total or now - self.last_out >= self.every:
            self.last_out = now
            self.out(self.line(extra))

    def step(self, n: int = 1, extra: str = "") -> None:
        """Add ``n``; the first line comes ``every`` seconds after the start, the last step's line is left to
        :meth:`finish` (one closing line, not two)."""
        self.done += n
        now = self.clock()
        if self.done < self.total and now - max(self.last_out, self.started) >= self.every:
            self.last_out = now
            self.out(self.line(extra))

    def finish(self, extra: str = "") -> None:
        self.last_out = self.clock()
        self.out(self.line(extra))
