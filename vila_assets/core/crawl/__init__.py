"""The image crawler, Dagster-free: reader -> policy -> fetch -> imaging -> checkpoint -> writer.

    from vila_assets.core.crawl import CrawlConfig, crawl
    summary = crawl("urls.parquet", "out/", CrawlConfig(image_size=336))

Module map (one job each): ``config`` (the options, defined once for the CLI and the Dagster resource),
``reader`` (stream the URL list), ``policy`` (which addresses may be contacted), ``fetch`` (HTTP with
deadlines, retries, manual redirects, byte cap), ``imaging`` (sniff, bomb guard, reduced decode,
upright, flatten, resize, re-encode, sha256, pHash), ``checkpoint`` (sample-level resume), ``writer``
(the samples.parquet schema), ``parts`` (one crawl over several processes), ``progress`` (done/total,
rate, ETA), ``crawler`` (the loop tying them).
"""

from .config import CrawlConfig, CrawlOption, crawl_options
from .crawler import CrawlSummary, crawl
from .imaging import phash, phash_distance, process_image, sniff
from .policy import Blocked, UrlPolicy
from .progress import ProgressLog
from .writer import SAMPLE_STATUSES, SAMPLES_SCHEMA

__all__ = [
    "SAMPLE_STATUSES",
    "SAMPLES_SCHEMA",
    "Blocked",
    "CrawlConfig",
    "CrawlOption",
    "CrawlSummary",
    "ProgressLog",
    "UrlPolicy",
    "crawl",
    "crawl_options",
    "phash",
    "phash_distance",
    "process_image",
    "sniff",
]
