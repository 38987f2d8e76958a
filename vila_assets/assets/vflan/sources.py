"""Where FLAN and M3IT come from, and how big the FLAN sample is.

A ``location`` is a hub repo (``owner/name`` or ``hf:owner/name``, pinned to ``revision``), a local directory
holding the repo's files (absolute, ``./``, ``~`` or ``file://``), or any fsspec URL (``s3://...``,
``memory://...``); see ``core.source_tree``."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from vila_assets.core.flan import DEFAULT_SAMPLE_SIZE, FLAN_REPO
from vila_assets.core.m3it import M3IT_REPO
from vila_assets.core.source_tree import SourceTree, open_source
from vila_assets.resources.hub import HubClient


def open_tree(location: str, revision: str, hub: HubClient, cache_dir) -> SourceTree:
    return open_source(location, revision, hub.location, cache_dir=cache_dir)


class FlanSource(dg.ConfigurableResource):
    """``Open-Orca/FLAN``'s files at ``location``. ``sample_size`` rows are sampled (VILA: 1M of ~378M);
    ``seed`` picks the sample under the ``curated`` policy (``vila`` takes VILA's linspace rows)."""

    location: str = Field(default=FLAN_REPO, description="hub repo id, local directory or fsspec URL")
    revision: str = Field(default="main", description="hub revision (ignored for directories and URLs)")
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = 0

    def tree(self, hub: HubClient, cache_dir) -> SourceTree:
        return open_tree(self.location, self.revision, hub, cache_dir)


class M3itSource(dg.ConfigurableResource):
    """``MMInstruction/M3IT``'s files at ``location``."""

    location: str = Field(default=M3IT_REPO, description="hub repo id, local directory or fsspec URL")
    revision: str = Field(default="main", description="hub revision (ignored for directories and URLs)")

    def tree(self, hub: HubClient, cache_dir) -> SourceTree:
        return open_tree(self.location, self.revision, hub, cache_dir)
