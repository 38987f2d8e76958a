"""The crawl loop: reader -> fetch (event loop, I/O) -> imaging (threads, CPU) -> checkpoint -> samples.parquet.

One crawl runs as ``parts`` crawler processes (``parts.py``), each with its own event loop and imaging
threads, taking blocks of input rows from a shared counter and writing checkpoint chunks into one
folder; the calling process crawls too, then assembles samples.parquet. One process's event loop costs
~1-2 CPU-ms per URL under the GIL, so a single process stops scaling at a few hundred URLs/s whatever
the core count.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .budget import Budgets, Reservation
from .checkpoint import Checkpoint, input_fingerprint
from .config import CrawlConfig
from .fetch import Fetcher
from .imaging import ImageSpec, configure_worker, process_image
from .parts import BlockDealer, PartFailed, RowTally, available_cpus, run_parts
from .policy import Resolver, UrlPolicy
from .progress import DefaultProgress, ProgressFn
from .reader import InputRow, count_rows, read_rows
from .writer import SAMPLE_STATUSES

log = logging.getLogger("vila_assets.crawl")

SAMPLES_FILE = "samples.parquet"


@dataclass
class CrawlSummary:
    total: int
    counts: dict[str, int]
    elapsed_s: float
    bytes_downloaded: int
    resumed: int  # rows taken from the checkpoint of an interrupted run
    output_path: Path | None = None
    errors: dict[str, int] = field(default_factory=dict)  # top error reasons of this run

    @property
    def ok(self) -> int:
        return self.counts.get("ok", 0)


# Below this many rows to do, an extra process costs more (~0.5 CPU-s of imports) than it brings.
MIN_ROWS_PER_PROCESS = 256


def plan_parts(config: CrawlConfig, todo: int) -> int:
    """How many crawler processes: as configured, or (``processes=0``) one per usable CPU while each
    gets at least ``MIN_ROWS_PER_PROCESS`` rows."""
    if config.processes:
        return max(1, min(config.processes, todo))
    return max(1, min(available_cpus(), todo // MIN_ROWS_PER_PROCESS))


def crawl(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: CrawlConfig = CrawlConfig(),
    *,
    progress: ProgressFn | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver | None = None,
) -> CrawlSummary:
    """Download, check and re-encode every URL of ``input_path`` into ``output_dir/samples.parquet``.

    One output row per input row, in input order, whatever happened to it (see ``SAMPLE_STATUSES``).
    Interrupted runs resume from ``output_dir/.checkpoint`` and produce the same bytes, whatever the
    number of processes of either run. ``transport`` and ``resolver`` (host, port -> addresses) are for
    tests (to record which addresses were contacted, to fake DNS); either keeps the crawl in this process.
    Memory: bodies and decoded pixels stay within ``config.body_memory`` and ``config.decode_memory``
    over all processes together (``budget.py``).
    """
    started = time.monotonic()
    input_path, output_dir = Path(input_path), Path(output_dir)
    total = count_rows(input_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = input_fingerprint(input_path, config.output_fields())
    ckpt = Checkpoint(output_dir, fingerprint, total, flush_rows=config.checkpoint_rows, flush_s=config.checkpoint_s)
    if ckpt.resumed:
        log.info("crawl: resuming, %d of %d rows already done", ckpt.resumed, total)
    tally = RowTally(done=ckpt.resumed)
    own_progress = progress is None
    report = DefaultProgress(total) if own_progress else progress
    try:
        _crawl_in_parts(input_path, output_dir, ckpt, fingerprint, config, (transport, resolver), tally,
                        lambda: report(tally.done, total, tally.counts))
    finally:
        if own_progress:
            report.close()
    target = output_dir / SAMPLES_FILE
    all_counts = ckpt.assemble(target)
    ckpt.remove()  # only now: samples.parquet is atomically in place
    summary = CrawlSummary(
        total=total,
        counts={s: all_counts.get(s, 0) for s in SAMPLE_STATUSES},
        elapsed_s=time.monotonic() - started,
        bytes_downloaded=tally.bytes,
        resumed=ckpt.resumed,
        output_path=target,
        errors=dict(sorted(tally.errors.items(), key=lambda kv: -kv[1])[:20]),
    )
    log.info("crawl: %d rows in %.1fs %s", total, summary.elapsed_s, summary.counts)
    return summary


def _crawl_in_parts(input_path: Path, output_dir: Path, ckpt: Checkpoint, fingerprint: dict, config: CrawlConfig,
                    test_hooks: tuple, tally: RowTally, on_rows: Callable[[], None]) -> None:
    """Crawl the rows ``ckpt`` lacks in as many processes as ``plan_parts`` says (this one included).
    ``test_hooks``: (transport, resolver), both None outside tests."""
    todo = ckpt.total - ckpt.resumed
    parts = 1 if any(hook is not None for hook in test_hooks) else plan_parts(config, todo)
    part_config = config.for_part(parts)
    budgets = Budgets.create(config.body_memory, config.decode_memory, shared=parts > 1)  # totals, for all parts
    if parts > 1:
        log.info("crawl: %d rows to do in %d processes", todo, parts)

    def part_zero(own: RowTally, on_own_rows: Callable[[], None], stop: threading.Event, dealer: BlockDealer) -> None:
        crawling = _crawl_rows(input_path, ckpt, part_config, dealer, budgets, test_hooks, own, on_own_rows, stop)
        _run_loop(crawling, config.event_loop)

    child_args = (input_path, output_dir, fingerprint, ckpt.total, part_config)
    run_parts(part_zero, _part_main, child_args, parts, tally, on_rows, shared=(budgets,))


def _run_loop(coro, event_loop: str) -> None:
    """Run ``coro`` to completion on a fresh event loop of kind ``event_loop``; from inside a running
    loop (an async asset) on a private thread."""

    def run() -> None:
        with asyncio.Runner(loop_factory=_loop_factory(event_loop)) as runner:
            runner.run(coro)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run()
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="crawl")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _loop_factory(name: str):
    """uvloop (libuv) when asked for and installed: ~25 % less event-loop CPU per request here
    (bench/README.md); the standard asyncio loop otherwise."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # not available on this platform (e.g. Windows)
            return None
        return uvloop.new_event_loop
    return None


def _part_main(part: int, tally: RowTally, on_rows: Callable[[], None], dealer: BlockDealer, input_path: Path,
               output_dir: Path, fingerprint: dict, total: int, config: CrawlConfig, budgets: Budgets) -> None:
    """Body of crawler process ``part``: unfinished rows of the blocks it gets from ``dealer``."""
    ckpt = Checkpoint(output_dir, fingerprint, total, flush_rows=config.checkpoint_rows,
                      flush_s=config.checkpoint_s, part=part, attach=True)
    crawling = _crawl_rows(input_path, ckpt, config, dealer, budgets, (None, None), tally, on_rows, None)
    _run_loop(crawling, config.event_loop)


async def _crawl_rows(input_path: Path, ckpt: Checkpoint, config: CrawlConfig, dealer: BlockDealer, budgets: Budgets,
                      test_hooks: tuple, tally: RowTally, on_rows: Callable[[], None], stop: threading.Event | None) -> None:
    """Fetch and process this process's unfinished rows; every finished row goes to ``ckpt``.
    ``stop`` (set from another thread) ends it early with ``PartFailed``."""
    transport, resolver = test_hooks
    spec = config.image_spec()
    loop = asyncio.get_running_loop()
    cancelled = threading.Event()  # ends imaging threads' waits for the pixel budget when we stop
    queue: asyncio.Queue[InputRow | None] = asyncio.Queue(maxsize=config.concurrency * 2)

    async def produce() -> None:
        for row in dealer.mine(read_rows(input_path)):
            if not ckpt.is_done(row.index):
                await queue.put(row)
        for _ in range(config.concurrency):
            await queue.put(None)

    async def work(fetcher: Fetcher, pool) -> None:
        while (row := await queue.get()) is not None:
            result = await _one(row, fetcher, pool, spec, loop, budgets, cancelled)
            tally.add(result["status"], result["error"], result["nbytes"] or 0)
            ckpt.add(result)
            on_rows()

    async def tick() -> None:  # the time-based flush, for when rows arrive slowly
        while True:
            await asyncio.sleep(config.checkpoint_s)
            ckpt.flush()

    async def all_rows(fetcher: Fetcher, pool) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce())
            for _ in range(config.concurrency):
                tg.create_task(work(fetcher, pool))

    async def until_stopped(job: asyncio.Task) -> None:
        """Wait for ``job``; cancel it if ``stop`` is set meanwhile (another process failed)."""
        while not job.done():
            if stop is not None and stop.is_set():
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
                raise PartFailed("stopped: another crawler process failed")
            await asyncio.wait({job}, timeout=0.2)
        job.result()

    # Threads, not processes: decode, resize and encode release the GIL, and the source bytes stay put.
    pool = concurrent.futures.ThreadPoolExecutor(
        config.workers, thread_name_prefix="crawl-imaging", initializer=configure_worker
    )
    ticker = asyncio.create_task(tick())
    try:
        async with Fetcher(config, UrlPolicy(config.allow_networks, resolver), transport) as fetcher:
            await until_stopped(asyncio.create_task(all_rows(fetcher, pool)))
    finally:
        ticker.cancel()
        cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        ckpt.flush()  # rows finished before a failure or stop are kept


_EMPTY_IMAGE_FIELDS = dict.fromkeys(
    ("width", "height", "orig_width", "orig_height", "sha256", "phash", "image"), None
)


async def _one(row: InputRow, fetcher: Fetcher, pool, spec: ImageSpec, loop, budgets: Budgets,
               cancelled: threading.Event) -> dict:
    base = {"index": row.index, "key": row.key, "url": row.url, "caption": row.caption}
    if not row.url:
        return {**base, **_EMPTY_IMAGE_FIELDS, "status": "failed_download", "error": "empty url",
                "http_status": None, "attempts": 0, "nbytes": 0}
    hold = Reservation(budgets.bodies)  # the body stays accounted for until its image is done
    try:
        got = await fetcher.fetch(row.url, hold)
        base.update(http_status=got.http_status, attempts=got.attempts, nbytes=got.nbytes)
        if got.data is None:
            return {**base, **_EMPTY_IMAGE_FIELDS, "status": got.status, "error": got.error}
        image = await loop.run_in_executor(pool, process_image, got.data, spec, budgets.pixels, cancelled)
        return {**base, **image}
    finally:
        hold.release()
