"""Where the COYO-700M metadata comes from."""

from __future__ import annotations

import dagster as dg

from vila_assets.core.coyo import REPO_ID


class CoyoSource(dg.ConfigurableResource):
    """The hub dataset holding COYO's 128 parquet shards, and the revision to read (resolved to a sha)."""

    repo: str = REPO_ID
    revision: str = "main"
