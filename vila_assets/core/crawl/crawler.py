"""The crawl loop: reader -> fetch (event loop, I/O) -> imaging (worker pool, CPU) -> checkpoint -> samples.parquet."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .checkpoint import Checkpoint, input_fingerprint
from .fetch import Fetcher
from .imaging import ImageSpec, configure_worker, process_image
from .policy import UrlPolicy
from .reader import InputRow, count_rows, read_rows
from .writer import SAMPLE_STATUSES

log = logging.getLogger("vila_assets.crawl")

DEFAULT_USER_AGENT = "vila-assets/0.1 (+https://github.com/vila-assets/vila_assets)"
SAMPLES_FILE = "samples.parquet"


@dataclass(frozen=True)
class CrawlConfig:
    image_size: int = 336  # short side, VILA default
    quality: int = 75
    min_size: int = 0  # min short side of the SOURCE image, else "filtered"
    max_aspect_ratio: float = 0.0  # 0 = off; long/short above this -> "filtered"
    timeout: float = 20.0  # TOTAL deadline per request attempt, redirects included
    retries: int = 3
    concurrency: int = 64
    per_host: int = 16
    allow_networks: tuple[str, ...] = ()  # CIDRs exempt from the private-address block
    max_bytes: int = 20 * 2**20
    max_pixels: int = 64_000_000
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    workers: int = 2  # imaging workers (decode/resize/encode)
    worker_kind: str = "process"  # "process" or "thread"
    http_backend: str = "aiohttp"  # wire layer under the httpx client: "aiohttp" (fast) or "httpx"
    checkpoint_rows: int = 256  # flush finished rows every K samples ...
    checkpoint_s: float = 5.0  # ... or every T seconds

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_networks", tuple(self.allow_networks))
        if self.worker_kind not in ("process", "thread"):
            raise ValueError(f"worker_kind must be 'process' or 'thread', not {self.worker_kind!r}")
        if self.http_backend not in ("aiohttp", "httpx"):
            raise ValueError(f"http_backend must be 'aiohttp' or 'httpx', not {self.http_backend!r}")

    def image_spec(self) -> ImageSpec:
        return ImageSpec(self.image_size, self.quality, self.min_size, self.max_aspect_ratio, self.max_pixels)

    def output_fields(self) -> dict:
        """Fields that change samples.parquet; a checkpoint made under other values is discarded."""
        skip = {"concurrency", "per_host", "workers", "worker_kind", "http_backend", "checkpoint_rows", "checkpoint_s"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


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


ProgressFn = Callable[[int, int, dict[str, int]], None]  # (done, total, counts so far)


class _DefaultProgress:
    """tqdm on a terminal, otherwise one log line every ``every_s`` seconds."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self.total = total
        self.every_s = every_s
        self._last = time.monotonic()
        self._bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="url", desc="crawl")
            except ImportError:
                pass
        self._shown = 0

    def __call__(self, done: int, total: int, counts: dict[str, int]) -> None:
        if self._bar is not None:
            self._bar.update(done - self._shown)
            self._shown = done
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or done == total:
            self._last = now
            log.info("crawl: %d/%d done %s", done, total, dict(sorted(counts.items())))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _make_pool(config: CrawlConfig) -> concurrent.futures.Executor:
    if config.worker_kind == "thread":
        return concurrent.futures.ThreadPoolExecutor(
            config.workers, thread_name_prefix="crawl-imaging", initializer=configure_worker
        )
    # spawn: safe in threaded hosts (Dagster, pytest with a server thread), and the workers stay our
    # direct children, so their CPU shows up in our RUSAGE_CHILDREN.
    ctx = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(config.workers, mp_context=ctx, initializer=configure_worker)


def crawl(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: CrawlConfig = CrawlConfig(),
    *,
    progress: ProgressFn | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CrawlSummary:
    """Download, check and re-encode every URL of ``input_path`` into ``output_dir/samples.parquet``.

    One output row per input row, in input order, whatever happened to it (see ``SAMPLE_STATUSES``).
    Interrupted runs resume from ``output_dir/.checkpoint`` and produce the same bytes.
    ``transport`` is for tests (e.g. to record which addresses were contacted).
    """
    coro = _crawl(Path(input_path), Path(output_dir), config, progress, transport)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (an async asset): run ours on a private thread.
    result: list = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coro)), name="crawl")
    thread.start()
    thread.join()
    if not result:
        raise RuntimeError("crawl failed; see the log")
    return result[0]


async def _crawl(input_path, output_dir, config, progress, transport) -> CrawlSummary:
    started = time.monotonic()
    total = count_rows(input_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(
        output_dir,
        input_fingerprint(input_path, config.output_fields()),
        total,
        flush_rows=config.checkpoint_rows,
        flush_s=config.checkpoint_s,
    )
    if ckpt.resumed:
        log.info("crawl: resuming, %d of %d rows already done", ckpt.resumed, total)
    own_progress = progress is None
    report = _DefaultProgress(total) if own_progress else progress
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    state = {"done": ckpt.resumed, "bytes": 0}
    spec = config.image_spec()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[InputRow | None] = asyncio.Queue(maxsize=config.concurrency * 2)

    async def produce() -> None:
        for row in read_rows(input_path):
            if not ckpt.is_done(row.index):
                await queue.put(row)
        for _ in range(config.concurrency):
            await queue.put(None)

    async def work(fetcher: Fetcher, pool) -> None:
        while (row := await queue.get()) is not None:
            result = await _one(row, fetcher, pool, spec, loop)
            state["bytes"] += result["nbytes"] or 0
            counts[result["status"]] = counts.get(result["status"], 0) + 1
            if result["error"]:
                errors[result["error"]] = errors.get(result["error"], 0) + 1
            ckpt.add(result)
            state["done"] += 1
            report(state["done"], total, counts)

    async def tick() -> None:  # the time-based flush, for when rows arrive slowly
        while True:
            await asyncio.sleep(config.checkpoint_s)
            ckpt.flush()

    pool = _make_pool(config)
    try:
        async with Fetcher(config, UrlPolicy(config.allow_networks), transport) as fetcher:
            ticker = asyncio.create_task(tick())
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(produce())
                    for _ in range(config.concurrency):
                        tg.create_task(work(fetcher, pool))
            finally:
                ticker.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if own_progress:
            report.close()
    target = output_dir / SAMPLES_FILE
    all_counts = await asyncio.to_thread(ckpt.assemble, target)
    ckpt.remove()  # only now: samples.parquet is atomically in place
    top = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:20])
    summary = CrawlSummary(
        total=total,
        counts={s: all_counts.get(s, 0) for s in SAMPLE_STATUSES},
        elapsed_s=time.monotonic() - started,
        bytes_downloaded=state["bytes"],
        resumed=ckpt.resumed,
        output_path=target,
        errors=top,
    )
    log.info("crawl: %d rows in %.1fs %s", total, summary.elapsed_s, summary.counts)
    return summary


_EMPTY_IMAGE_FIELDS = dict.fromkeys(
    ("width", "height", "orig_width", "orig_height", "sha256", "phash", "image"), None
)


async def _one(row: InputRow, fetcher: Fetcher, pool, spec: ImageSpec, loop) -> dict:
    base = {"index": row.index, "key": row.key, "url": row.url, "caption": row.caption}
    if not row.url:
        return {**base, **_EMPTY_IMAGE_FIELDS, "status": "failed_download", "error": "empty url",
                "http_status": None, "attempts": 0, "nbytes": 0}
    got = await fetcher.fetch(row.url)
    base.update(http_status=got.http_status, attempts=got.attempts, nbytes=got.nbytes)
    if got.data is None:
        return {**base, **_EMPTY_IMAGE_FIELDS, "status": got.status, "error": got.error}
    image = await loop.run_in_executor(pool, process_image, got.data, spec)
    return {**base, **image}
