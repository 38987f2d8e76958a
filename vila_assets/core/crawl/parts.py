"""One crawl as several processes: which process takes which row, starting and stopping them, and
their progress flowing back to the parent.

Each process (the calling one runs part 0) has its own event loop and imaging threads and takes the
input in blocks of ``PART_BLOCK`` consecutive rows from a shared counter (``BlockDealer``): whoever is
free takes the next block, so a process that started later or met slow hosts simply takes fewer. Every
process reads the input itself and checkpoints into the shared ``.checkpoint`` folder under its own
chunk names, so nothing but a counter and small progress messages cross a process boundary. A process
dies with its parent (``PR_SET_PDEATHSIG`` on Linux, a watchdog thread elsewhere): after a ``kill -9``
of the crawl no orphan keeps writing chunks into a folder a rerun uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PART_BLOCK = 64  # consecutive rows per deal: a process's chunks cover short runs of the input
PROGRESS_EVERY_S = 0.5
MAX_ERROR_KINDS = 50  # distinct error strings a process reports back (the summary keeps the top 20)
MAX_TRACKED_ERRORS = 10_000  # distinct error strings counted per process ("dns: cannot resolve <host>" ...)
OTHER_ERRORS = "(other errors)"


class BlockDealer:
    """Hands out blocks of ``PART_BLOCK`` consecutive input rows, each to exactly one process, in
    increasing order. ``counter``: a ``multiprocessing.Value("q")`` shared by the processes, or None
    for a crawl in one process."""

    def __init__(self, counter=None) -> None:
        self._counter = counter
        self._next = 0

    def claim(self) -> int:
        if self._counter is None:
            self._next += 1
            return self._next - 1
        with self._counter.get_lock():
            block = self._counter.value
            self._counter.value = block + 1
        return block

    def mine(self, rows):
        """The rows of ``rows`` (an input-ordered iterator) that fall into blocks this process claims."""
        block = self.claim()
        for row in rows:
            b = row.index // PART_BLOCK
            while b > block:  # finished (or skipped past) our block: take the next free one
                block = self.claim()
            if b == block:
                yield row


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a k8s CPU limit)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    return max(1, n)


@dataclass
class RowTally:
    """Rows finished so far by status, bytes downloaded and error reasons."""

    done: int = 0
    bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, error: str | None, nbytes: int) -> None:
        self.done += 1
        self.bytes += nbytes
        self.counts[status] = self.counts.get(status, 0) + 1
        if error:
            if error not in self.errors and len(self.errors) >= MAX_TRACKED_ERRORS:
                error = OTHER_ERRORS  # bounded memory over millions of hosts
            self.errors[error] = self.errors.get(error, 0) + 1

    def progress(self) -> RowTally:
        """A copy without the error reasons (they can be many; they travel once, at the end)."""
        return RowTally(self.done, self.bytes, dict(self.counts))

    def final(self) -> RowTally:
        top = dict(sorted(self.errors.items(), key=lambda kv: -kv[1])[:MAX_ERROR_KINDS])
        return RowTally(self.done, self.bytes, dict(self.counts), top)


class PartFailed(RuntimeError):
    """Another crawler process failed; this one stopped early (its finished rows are checkpointed)."""


def run_parts(
    local_body: Callable[[RowTally, Callable[[], None], threading.Event, BlockDealer], None],
    child_body: Callable,
    child_args: tuple,
    parts: int,
    tally: RowTally,
    on_rows: Callable[[], None],
    shared: tuple = (),
) -> None:
    """Crawl part 0 here with ``local_body(part_tally, on_rows, stop, dealer)`` and parts 1.. in spawned
    processes with ``child_body(part, part_tally, on_rows, dealer, *child_args, *shared)``; wait for all.

    ``child_body`` and ``child_args`` reach a child as pickled bytes, loaded only once it has armed
    "die with my parent" (loading them imports the crawler: seconds on a busy machine, during which a
    killed parent would otherwise leave it running). ``shared``: objects that must travel with the
    process itself (``multiprocessing`` values and locks, such as the memory budgets).

    ``tally`` (which may already count resumed rows) accumulates what every part finishes; ``on_rows()``
    is called whenever it changes. If a process fails, the others are stopped (``stop`` is set for the
    local part) and ``RuntimeError`` carries its traceback; the checkpoint keeps every flushed row.
    """
    progress = _PartProgress(tally, parts, on_rows)
    children = _Children(pickle.dumps((child_body, child_args)), shared, parts, progress)
    try:
        children.start()
        try:
            local_body(progress.latest[0], progress.refresh, children.stop, children.dealer())
        except PartFailed:
            pass  # the reason is in ``children.failure``
        children.wait()
        progress.refresh(final=True)
    finally:
        children.close()


class _PartProgress:
    """Every part's latest ``RowTally`` (part 0's is updated in place by the local part), summed into
    the caller's ``tally`` on each ``refresh``."""

    def __init__(self, tally: RowTally, parts: int, on_rows: Callable[[], None]) -> None:
        self.tally = tally
        self.base = RowTally(tally.done, tally.bytes, dict(tally.counts), dict(tally.errors))
        self.latest = [RowTally() for _ in range(parts)]
        self.on_rows = on_rows
        self._lock = threading.Lock()  # the local part and the collector thread both refresh

    def refresh(self, final: bool = False) -> None:
        with self._lock:
            _combine(self.tally, self.base, self.latest, with_errors=final)
            self.on_rows()


class _Children:
    """Crawler processes 1..parts-1 of one crawl and the thread that collects their messages into
    ``progress``. The first failure lands in ``failure`` and sets ``stop``."""

    def __init__(self, payload: bytes, shared: tuple, parts: int, progress: _PartProgress) -> None:
        # spawn, not fork: the caller may be threaded (Dagster, a test web server).
        ctx = multiprocessing.get_context("spawn")
        self.parts = parts
        self.progress = progress
        self.events = ctx.Queue() if parts > 1 else None
        self.counter = ctx.Value("q", 0) if parts > 1 else None
        self.procs = [
            ctx.Process(target=_child, args=(payload, k, parts, shared, self.events, self.counter, os.getpid()),
                        name=f"vila-crawl-{k}", daemon=True)
            for k in range(1, parts)
        ]
        self.stop = threading.Event()
        self.failure: str | None = None
        self._collector = threading.Thread(target=self._collect, name="crawl-parts", daemon=True)

    def dealer(self) -> BlockDealer:
        return BlockDealer(self.counter)

    def start(self) -> None:
        for p in self.procs:
            p.start()
        if self.procs:
            self._collector.start()

    def wait(self) -> None:
        """Until every child reported its last rows; ``RuntimeError`` if one failed."""
        if self.procs:
            self._collector.join()
        if self.failure is not None:
            raise RuntimeError(self.failure)

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.stop.set()

    def _collect(self) -> None:
        pending = set(range(1, self.parts))
        exited_at: dict[int, float] = {}
        while pending and not self.stop.is_set():
            try:
                kind, k, payload = self.events.get(timeout=0.2)
            except queue.Empty:
                if (reason := self._exit_problem(pending, exited_at)) is not None:
                    self._fail(reason)
                    return
                continue
            if kind == "failed":
                self._fail(f"crawler process {k} of {self.parts} failed:\n{payload}")
                return
            self.progress.latest[k] = payload
            if kind == "done":
                pending.discard(k)
            self.progress.refresh()

    def _exit_problem(self, pending: set[int], exited_at: dict[int, float]) -> str | None:
        """Why a child still ``pending`` (not yet "done") is gone, if one is."""
        for k in sorted(pending):
            code = self.procs[k - 1].exitcode
            if code is not None and code != 0:
                return f"crawler process {k} of {self.parts} died (exit code {code})"
            # Exited cleanly: its last message is flushed before exit, so give it a moment.
            if code == 0 and time.monotonic() - exited_at.setdefault(k, time.monotonic()) > 5:
                return f"crawler process {k} of {self.parts} exited without reporting its rows"
        return None

    def close(self) -> None:
        """Stop whatever still runs (after a failure, or an exception in the local part)."""
        self.stop.set()
        if self._collector.is_alive():
            self._collector.join(timeout=5)
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            if p.pid is not None:
                p.join(timeout=10)
        if self.events is not None:
            self.events.close()


def _combine(tally: RowTally, base: RowTally, latest: list[RowTally], with_errors: bool) -> None:
    """``tally`` = ``base`` + every part's latest; the error reasons (possibly many) only when asked."""
    tally.done = base.done + sum(t.done for t in latest)
    tally.bytes = base.bytes + sum(t.bytes for t in latest)
    tally.counts = dict(base.counts)
    for t in latest:
        for key, n in t.counts.items():
            tally.counts[key] = tally.counts.get(key, 0) + n
    if with_errors:
        tally.errors = dict(base.errors)
        for t in latest:
            for key, n in t.errors.items():
                tally.errors[key] = tally.errors.get(key, 0) + n


def _child(payload: bytes, part: int, parts: int, shared: tuple, events, counter, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    tally = RowTally()
    last = [time.monotonic()]

    def on_rows() -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            events.put(("progress", part, tally.progress()))

    try:
        body, args = pickle.loads(payload)  # imports the crawler, now that a dead parent kills us
        body(part, tally, on_rows, BlockDealer(counter), *args, *shared)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        events.put(("failed", part, traceback.format_exc()))
        events.close()
        events.join_thread()
        sys.exit(1)
    events.put(("done", part, tally.final()))
    events.close()
    events.join_thread()


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:  # for platforms without PDEATHSIG
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
