"""Run config of the LLaVA assets (sources and revisions are the ``llava_source`` resource)."""

from __future__ import annotations

import dagster as dg


class RecordsConfig(dg.Config):
    strict: bool = True  # a malformed record fails the run (file + record id); False: count and skip it


class Cc3mConfig(RecordsConfig):
    drop_bad_images: bool = True  # leave out records whose image is missing or undecodable (reported)
    max_zip_entries: int = 2_000_000
    max_zip_bytes: int = 64 << 30
