"""``ImageCrawler``: the crawler's configuration as a Dagster resource; the work is in ``core.crawl``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from vila_assets.core.crawl import CrawlConfig, CrawlSummary, crawl

_D = CrawlConfig()


class ImageCrawler(dg.ConfigurableResource):
    """Download, check and re-encode a URL list into ``samples.parquet`` (see ``core.crawl.crawl``)."""

    image_size: int = _D.image_size
    quality: int = _D.quality
    min_size: int = _D.min_size
    max_aspect_ratio: float = _D.max_aspect_ratio
    timeout: float = _D.timeout
    retries: int = _D.retries
    concurrency: int = _D.concurrency
    per_host: int = _D.per_host
    allow_networks: list[str] = []
    max_bytes: int = _D.max_bytes
    max_pixels: int = _D.max_pixels
    max_redirects: int = _D.max_redirects
    user_agent: str = _D.user_agent
    backoff_base: float = _D.backoff_base
    backoff_max: float = _D.backoff_max
    processes: int = _D.processes
    workers: int = _D.workers
    http_backend: str = _D.http_backend
    event_loop: str = _D.event_loop
    checkpoint_rows: int = _D.checkpoint_rows
    checkpoint_s: float = _D.checkpoint_s

    def crawl_config(self) -> CrawlConfig:
        fields = {name: getattr(self, name) for name in CrawlConfig.__dataclass_fields__}
        fields["allow_networks"] = tuple(self.allow_networks)
        return CrawlConfig(**fields)

    def crawl(self, input_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], progress_log=None) -> CrawlSummary:
        """``progress_log``: a logger (e.g. ``context.log``) that gets a line every ~10 s."""
        progress = None
        if progress_log is not None:
            import time

            last = [0.0]

            def progress(done: int, total: int, counts: dict[str, int]) -> None:
                now = time.monotonic()
                if now - last[0] >= 10 or done == total:
                    last[0] = now
                    progress_log.info(f"crawl: {done}/{total} {dict(sorted(counts.items()))}")

        return crawl(input_path, output_dir, self.crawl_config(), progress=progress)

    def crawl_batch(
        self,
        batch_dir: Path,
        write_input: Callable[[Path], object],
        split_output: Callable[[Path], object],
        progress_log=None,
    ) -> CrawlSummary:
        """Crawl several shards with ONE crawler start-up (worker pool, connection pools and per-host
        limits span them all): ``write_input(path)`` writes the combined input, ``split_output(samples)``
        cuts the result back per shard. ``batch_dir`` keeps the crawler's checkpoint until the split is
        done, so a retried run over the same shards resumes; it is removed afterwards."""
        batch_dir = Path(batch_dir)
        input_path = batch_dir / "input.parquet"
        write_input(input_path)
        summary = self.crawl(input_path, batch_dir, progress_log=progress_log)
        if progress_log is not None:
            progress_log.info(f"crawled {summary.total} URLs: {summary.counts}")
        split_output(batch_dir / "samples.parquet")
        shutil.rmtree(batch_dir)
        return summary
