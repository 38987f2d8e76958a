"""Where the COYO-700M metadata comes from."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from vila_assets.core.coyo import REPO_ID
from vila_assets.core.hub import HubLocation
from vila_assets.core.source_tree import SourceTree, open_source


class CoyoSource(dg.ConfigurableResource):
    """COYO's 128 parquet shards: ``location`` is a hub dataset (``owner/name``, read at ``revision``,
    resolved to a commit sha once), a local directory a user already holds, or any fsspec URL
    (``s3://...``, ``memory://...``), laid out as the release (``data/part-NNNNN-<uuid>-c000.snappy.parquet``)
    or as the hub's ``refs/convert/parquet`` branch (``.../train/NNNN.parquet``)."""

    location: str = REPO_ID
    revision: str = "main"

    def tree(self, hub: HubLocation, cache_dir: str | Path, revision: str | None = None) -> SourceTree:
        """The source as a file tree; ``revision`` pins a commit recorded earlier (hub sources only)."""
        return open_source(self.location, revision or self.revision, hub, cache_dir=cache_dir)
