"""Where the LLaVA family's files are under the data root: VILA's registry paths (the published JSON files
and the image folders they resolve images against) and the family's reports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vila_assets.core.vila_format import REGISTRY, registry_path
from vila_assets.resources.storage import DataRoot

FAMILY = "llava"
CC3M = "llava_1_5_align"  # registry name of LLaVA-CC3M-Pretrain-595K
MIX665K = "llava_1_5_sft"  # registry name of llava_v1_5_mix665k


def registry_json(data_root: DataRoot, name: str) -> Path:
    """The local path of registry dataset ``name``'s data file."""
    return registry_path(name, data_root.path())


def registry_images(data_root: DataRoot, name: str) -> Path:
    """The folder VILA joins registry dataset ``name``'s image paths to."""
    return data_root.path(REGISTRY[name].image_path.removeprefix("./"))


@dataclass(frozen=True)
class LlavaLayout:
    data_root: DataRoot

    def image_root(self, rel: str = "") -> Path:
        """An image root (``coco/train2017``) under ``playground/data``; ``""`` the base of them all."""
        return self.data_root.playground(rel)

    @property
    def cc3m_json(self) -> Path:
        return registry_json(self.data_root, CC3M)

    @property
    def cc3m_images(self) -> Path:
        return registry_images(self.data_root, CC3M)

    @property
    def mix665k_json(self) -> Path:
        return registry_json(self.data_root, MIX665K)

    @property
    def mix665k_images(self) -> Path:
        return registry_images(self.data_root, MIX665K)

    @property
    def cc3m_report(self) -> Path:
        return self.data_root.reports(FAMILY, "cc3m_595k_image_problems.json")

    @property
    def mix665k_report(self) -> Path:
        return self.data_root.reports(FAMILY, "mix665k_image_roots.json")

    def root_report(self, root: str) -> Path:
        """What fetching ``root`` did and found: archives, coverage, every missing name."""
        return self.data_root.reports(FAMILY, "image_roots", root.replace("/", "__") + ".json")

    def archive_cache(self, url: str) -> Path:
        """Where an archive downloaded from ``url`` is kept while (and, on request, after) it is unpacked."""
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        return self.data_root.cache(FAMILY, "archives", key, url.rstrip("/").rsplit("/", 1)[-1] or "archive")

    @property
    def cover_crawl(self) -> Path:
        """The OCR-VQA cover crawl's folder: its checkpoint lets a retried run resume."""
        return self.data_root.staging(FAMILY, "ocr_vqa_covers")
