"""``ImageCrawler``: the crawler's configuration as a Dagster resource; the work is in ``core.crawl``.

Its fields are generated from ``CrawlConfig`` (``core/crawl/config.py``), the one definition of the
crawler's options: same names, types, defaults, and each field's help as its launchpad description.
A tuple option is a ``list`` here (Dagster config has arrays, not tuples).
"""

from __future__ import annotations

import os
import shutil
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pydantic

from vila_assets.core.crawl import CrawlConfig, CrawlOption, CrawlSummary, ProgressLog, crawl, crawl_options


def _resource_field(option: CrawlOption) -> tuple[Any, Any]:
    """``(annotation, pydantic.Field)`` for one crawl option."""
    if option.repeatable:
        return list[option.item_type], pydantic.Field(default=list(option.default), description=option.help)
    return option.type, pydantic.Field(default=option.default, description=option.help)


# The generated base holds the fields; ImageCrawler below adds the behaviour (and names the resource).
_CrawlOptions = pydantic.create_model(
    "CrawlOptions",
    __base__=dg.ConfigurableResource,
    **{option.name: _resource_field(option) for option in crawl_options()},
)


class ImageCrawler(_CrawlOptions):  # type: ignore[misc, valid-type] - a base built at import time
    """Download, check and re-encode a URL list into ``samples.parquet`` (see ``core.crawl.crawl``)."""

    if typing.TYPE_CHECKING:  # what the generated base provides, for readers and type checkers
        allow_networks: list[str]

        def __init__(self, **options: Any) -> None: ...

    def crawl_config(self) -> CrawlConfig:
        return CrawlConfig(**{option.name: getattr(self, option.name) for option in crawl_options()})

    def crawl(self, input_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], progress_log=None) -> CrawlSummary:
        """``progress_log``: a logger (e.g. ``context.log``) that gets a line every ~10 s with done/total,
        rate and ETA."""
        progress = ProgressLog(progress_log.info, every_s=10.0) if progress_log is not None else None
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
