"""Where ShareGPT4V comes from: the raw captions and VILA's own repo, each anywhere a source may be."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from vila_assets.core.sharegpt4v import VILA_PT_FILE, VILA_SFT_FILE
from vila_assets.core.source_tree import SourceTree, open_source
from vila_assets.resources.hub import HubClient

CAPTIONS_REPO = "Lin-Chen/ShareGPT4V"
MIT_REPO = "mit-han-lab/ShareGPT4V"

# the files the family reads from those sources
CAP100K = "sharegpt4v_instruct_gpt4-vision_cap100k.json"  # captions (curated)
PT1246K = "share-captioner_coco_lcs_sam_1246k_1107.json"  # captions (curated)
DETAIL23K = "raw_data/llava_detail_23k.json"  # mit (both policies)
MIT_SFT = VILA_SFT_FILE  # mit (vila)
MIT_PT = VILA_PT_FILE  # mit (vila)

_LOCATION_HELP = "hub repo (owner/name or hf:owner/name), local directory (absolute, ./ or file://) or fsspec URL"


class ShareGPT4VSource(dg.ConfigurableResource):
    """The raw captions (``Lin-Chen/ShareGPT4V``: read under the ``curated`` policy) and VILA's repo
    (``mit-han-lab/ShareGPT4V``: its published files under ``vila``; ``raw_data/llava_detail_23k.json``
    under both). Each location is a hub repo (its revision resolved to a sha per run), a local directory
    holding the repo's files, or an fsspec URL; the revision applies to hub repos only."""

    captions_location: str = Field(default=CAPTIONS_REPO, description=_LOCATION_HELP)
    captions_revision: str = "main"
    mit_location: str = Field(default=MIT_REPO, description=_LOCATION_HELP)
    mit_revision: str = "main"

    def captions(self, hub: HubClient, cache_dir: str | Path) -> SourceTree:
        return open_source(self.captions_location, self.captions_revision, hub.location, cache_dir=cache_dir)

    def mit(self, hub: HubClient, cache_dir: str | Path) -> SourceTree:
        return open_source(self.mit_location, self.mit_revision, hub.location, cache_dir=cache_dir)
