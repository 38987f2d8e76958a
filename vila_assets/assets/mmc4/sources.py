"""Where MMC4 shards come from: a resource, so the launchpad shows it and a profile can point it elsewhere."""

from __future__ import annotations

import dagster as dg

from vila_assets.core.mmc4 import DEFAULT_LOCATION, Listing, SourceSpec, list_source
from vila_assets.resources.hub import HubClient


class Mmc4Source(dg.ConfigurableResource):
    """``location``: a hub repo ``hf:<org>/<name>`` (default: the public ``jmhessel/mmc4-core-ff``; VILA's
    original mmc4-core was withdrawn in Feb 2025), a local directory (absolute, ``./``, ``~`` or
    ``file://``), any other fsspec URL (``s3://bucket/mmc4``), or an http(s) URL template with ``{index}``.
    Shards may sit at the top level or in a subfolder. ``revision``: branch, tag or commit of a hub repo
    (resolved to a sha and recorded per run; ignored elsewhere)."""

    location: str = DEFAULT_LOCATION
    revision: str = "main"

    def spec(self) -> SourceSpec:
        return SourceSpec(location=self.location, revision=self.revision)

    def listing(self, hub: HubClient) -> Listing:
        return list_source(self.spec(), hub.location)
