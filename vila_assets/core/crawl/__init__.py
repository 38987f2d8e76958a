"""The image crawler, Dagster-free: reader -> policy -> fetch -> imaging -> checkpoint -> writer.

    from vila_assets.core.crawl import CrawlConfig, crawl
    summary = crawl("urls.parquet", "out/", CrawlConfig(image_size=336))

Module map (one job each): ``config`` (the options, defined once for the CLI and the Dagster resource),
``reader`` (stream the URL list), ``policy`` (which addresses may be contacted), ``fetch`` (HTTP with
deadlines, retries, manual redirects), ``body`` (the byte cap on decoded bodies), ``budget`` (memory
shared by the crawler processes), ``headers`` (format and declared size from the first bytes),
``imaging`` (bomb guard, reduced decode, upright, resize, re-encode, sha256, pHash), ``modes`` (every
Pillow mode to RGB), ``checkpoint`` (sample-level resume), ``writer`` (the samples.parquet schema),
``parts`` (one crawl over several processes), ``progress`` (done/total, rate, ETA), ``crawler`` (the
loop tying them).

The names below load on first use: a spawned crawler process imports ``parts`` without pulling in
OpenCV, Pillow, pyarrow and aiohttp first, so it can arm "die with my parent" within milliseconds.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SAMPLE_STATUSES": "writer",
    "SAMPLES_SCHEMA": "writer",
    "Blocked": "policy",
    "CrawlConfig": "config",
    "CrawlOption": "config",
    "CrawlSummary": "crawler",
    "ProgressLog": "progress",
    "UrlPolicy": "policy",
    "crawl": "crawler",
    "crawl_options": "config",
    "phash": "imaging",
    "phash_distance": "imaging",
    "process_image": "imaging",
    "sniff": "imaging",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
