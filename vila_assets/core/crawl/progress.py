"""A crawl's progress as a person reads it: done/total, rate, ETA and the counts by status.

The crawler calls a ``ProgressFn`` whenever rows finish (often: every row), so the callables here
only compare a clock until it is time to write a line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from vila_assets.core.progress import duration_text

ProgressFn = Callable[[int, int, dict[str, int]], None]  # (done, total, counts so far)

log = logging.getLogger("vila_assets.crawl")


class ProgressLog:
    """A ``ProgressFn`` handing ``emit`` one line every ``every_s`` seconds and one when all is done:
    ``crawl: 1200/5000 (24.0%), 85.3 URLs/s, ETA 44s {'failed_download': 100, 'ok': 1100}``.

    The rate counts the rows finished since the first call, so rows resumed from a checkpoint (already
    in ``done`` then) do not inflate it or shorten the ETA."""

    def __init__(self, emit: Callable[[str], None], every_s: float = 10.0) -> None:
        self.emit = emit
        self.every_s = every_s
        self._last = time.monotonic()
        self._start: tuple[float, int] | None = None  # (time, done) at the first call
        self._shown = -1

    def __call__(self, done: int, total: int, counts: dict[str, int]) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = (now, done)
        finished = done == total and self._shown != total
        if now - self._last >= self.every_s or finished:
            self._last, self._shown = now, done
            self.emit(self.line(done, total, counts, now))

    def line(self, done: int, total: int, counts: dict[str, int], now: float) -> str:
        start_s, start_done = self._start or (now, done)
        rate = (done - start_done) / (now - start_s) if now > start_s and done > start_done else None
        percent = 100.0 * done / total if total else 100.0
        if rate is None:
            pace = "rate n/a"
        else:
            pace = f"{rate:.1f} URLs/s, ETA {duration_text((total - done) / rate)}"
        return f"crawl: {done}/{total} ({percent:.1f}%), {pace} {dict(sorted(counts.items()))}"


class DefaultProgress:
    """tqdm on a terminal, otherwise a ``ProgressLog`` line on the crawl logger every ``every_s`` seconds."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self._bar = None
        self._shown = 0
        self._log = ProgressLog(log.info, every_s)
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="url", desc="crawl")
            except ImportError:
                pass

    def __call__(self, done: int, total: int, counts: dict[str, int]) -> None:
        if self._bar is None:
            self._log(done, total, counts)
            return
        self._bar.update(done - self._shown)
        self._shown = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
