"""Where the ShareGPT4V family's files are under the data root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vila_assets.assets.llava.layout import registry_images, registry_json
from vila_assets.assets.sharegpt4v.sources import CAP100K
from vila_assets.resources.storage import DataRoot

FAMILY = "sharegpt4v"
SFT = "sharegpt4v_sft"  # registry name of sharegpt4v_mix738k_remove_sa.json
# VILA 1.5's registry path for the filtered PT captions (not in vila_format.REGISTRY, which is v1); the hub
# file is filter-share-captioner_... (the jason- prefix is an internal name)
PT_FILTERED = "ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json"


@dataclass(frozen=True)
class ShareGPT4VLayout:
    data_root: DataRoot

    @property
    def cap100k_filtered(self) -> Path:
        """The filtered GPT-4V captions alone: staging, read back by the recombination."""
        return self.data_root.staging(FAMILY, f"filter-{CAP100K}")

    @property
    def pretrain_filtered(self) -> Path:
        return self.data_root.playground(PT_FILTERED)

    @property
    def sft_json(self) -> Path:
        return registry_json(self.data_root, SFT)

    @property
    def sft_images(self) -> Path:
        return registry_images(self.data_root, SFT)

    @property
    def filter_report(self) -> Path:
        return self.data_root.reports(FAMILY, "filter_report.json")
