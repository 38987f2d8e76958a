"""Run config of the LLaVA assets (sources and revisions are the ``llava_source`` and ``image_roots_source``
resources)."""

from __future__ import annotations

import dagster as dg


class RecordsConfig(dg.Config):
    strict: bool = True  # a malformed record fails the run (file + record id); False: count and skip it


class Cc3mConfig(RecordsConfig):
    drop_bad_images: bool = True  # leave out records whose image is missing or undecodable (reported)
    max_zip_entries: int = 2_000_000
    max_zip_bytes: int = 64 << 30


class CoverageChecks(dg.Config):
    min_coverage: float = 1.0  # share of the referenced images a root must hold
    # the web loses covers: ~355 of OCR-VQA's are gone upstream (LLaVA issue #1618)
    min_coverage_crawled: float = 0.99


class ImageRootsConfig(dg.Config):
    keep_archives: bool = False  # keep each downloaded archive after its root is in place (reruns skip the download)
    max_archive_entries: int = 2_000_000  # LLaVA-Pretrain's images.zip holds 558K images
    max_archive_bytes: int = 64 << 30  # GQA's images.zip is ~20 GB
    missing_listed: int = 50  # missing names shown in the metadata (the report lists all)
    checks: CoverageChecks = CoverageChecks()
