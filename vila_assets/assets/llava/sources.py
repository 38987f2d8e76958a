"""Where the LLaVA data and the SFT image roots come from: two source resources.

- ``llava_source`` (:class:`LlavaSource`): the three LLaVA repos, each a location ``open_source``
  understands: a hub repo (``owner/name``, at ``*_revision``), a local directory or an fsspec URL.
- ``image_roots_source`` (:class:`ImageRootsSource`): the archives of every image root fetched over
  HTTP (official URLs by default, each with an optional expected size and sha256), ``mirrors`` mapping an
  official host to another base URL, and OCR-VQA's ``dataset.json``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pydantic

from vila_assets.core.image_roots import OFFICIAL_ARCHIVES, ArchiveSpec, field_name
from vila_assets.core.ranged_download import mirrored
from vila_assets.core.source_tree import SourceTree, open_source
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot

CC3M_REPO = "liuhaotian/LLaVA-CC3M-Pretrain-595K"
PRETRAIN_REPO = "liuhaotian/LLaVA-Pretrain"
INSTRUCT_REPO = "liuhaotian/LLaVA-Instruct-150K"

# the files the family reads from those repos
CC3M_CHAT = "chat.json"
CC3M_IMAGES_ZIP = "images.zip"
PRETRAIN_IMAGES_ZIP = "images.zip"
MIX665K_FILE = "llava_v1_5_mix665k.json"

OCR_VQA_DRIVE_FOLDER = "https://drive.google.com/drive/folders/1_GYPY5UkUy7HIcR0zq3ZCFgeZN7BAfm_"


class LlavaSource(dg.ConfigurableResource):
    """The CC3M-595K, LLaVA-Instruct-150K (mix665k) and LLaVA-Pretrain (the 558K images) sources. Each
    ``*_location`` is a hub repo id (read at ``*_revision``, resolved to a sha once per run), a local
    directory (absolute, ``./`` or ``file://``) or an fsspec URL, holding the repo's files."""

    cc3m_location: str = CC3M_REPO
    cc3m_revision: str = "main"
    instruct_location: str = INSTRUCT_REPO
    instruct_revision: str = "main"
    pretrain_location: str = PRETRAIN_REPO
    pretrain_revision: str = "main"

    def tree(self, which: str, hub: HubClient, data_root: DataRoot) -> SourceTree:
        """The source tree of ``which`` (``cc3m``, ``instruct`` or ``pretrain``)."""
        location, revision = getattr(self, f"{which}_location"), getattr(self, f"{which}_revision")
        return open_source(location, revision, hub.location, cache_dir=data_root.cache("sources"))


def _official(root: str) -> list[Archive]:
    return [Archive(url=a.url, strip=a.strip, include=a.include) for a in OFFICIAL_ARCHIVES[root]]


def _archives_field(root: str, help_text: str):
    if root in OFFICIAL_ARCHIVES:
        return pydantic.Field(default_factory=lambda: _official(root), description=help_text)
    return pydantic.Field(default_factory=list, description=help_text)


class Archive(dg.Config):
    """One archive of an image root (see ``core.image_roots.ArchiveSpec``)."""

    url: str
    strip: str = pydantic.Field("", description="folder inside the archive holding the root's files ('' = top level)")
    include: str = pydantic.Field("", description="glob on file names to keep ('' = every file)")
    size: int | None = pydantic.Field(None, description="expected size in bytes, verified when given")
    sha256: str | None = pydantic.Field(None, description="expected sha256 (hex), verified when given")

    def spec(self) -> ArchiveSpec:
        return ArchiveSpec(self.url, self.strip, self.include, self.size, self.sha256)


_SHAREGPT4V_HELP = ("ShareGPT4V's {root}: no stable official URL (ShareGPT4V docs/Data.md links {where}); "
                    "list the archives you hold (a local mirror, an object store URL)")


class ImageRootsSource(dg.ConfigurableResource):
    """The archives of each image root fetched over HTTP (one field per root, named after it:
    ``coco/train2017`` -> ``coco_train2017``), ``mirrors`` (official base URL -> replacement base URL,
    e.g. an internal mirror), OCR-VQA's ``dataset.json`` and how its covers are crawled."""

    coco_train2017: list[Archive] = _archives_field("coco/train2017", "COCO train2017 (LLaVA README)")
    gqa_images: list[Archive] = _archives_field("gqa/images", "GQA images (LLaVA README)")
    textvqa_train_images: list[Archive] = _archives_field("textvqa/train_images", "TextVQA train+val images")
    vg_vg_100k: list[Archive] = _archives_field("vg/VG_100K", "Visual Genome part 1")
    vg_vg_100k_2: list[Archive] = _archives_field("vg/VG_100K_2", "Visual Genome part 2")
    sam_images: list[Archive] = _archives_field(
        "sam/images", _SHAREGPT4V_HELP.format(root="sam/images", where="SA-1B's sa_000000..sa_000050.tar, "
                                              "behind expiring links; tars hold a .json per image: include '*.jpg'"))
    wikiart_images: list[Archive] = _archives_field(
        "wikiart/images", _SHAREGPT4V_HELP.format(root="wikiart/images", where="a Google Drive folder"))
    web_celebrity_images: list[Archive] = _archives_field(
        "web-celebrity/images", _SHAREGPT4V_HELP.format(root="web-celebrity/images", where="a Google Drive folder"))
    web_landmark_images: list[Archive] = _archives_field(
        "web-landmark/images", _SHAREGPT4V_HELP.format(root="web-landmark/images", where="a Google Drive folder"))
    share_textvqa_images: list[Archive] = _archives_field(
        "share_textvqa/images", _SHAREGPT4V_HELP.format(root="share_textvqa/images", where="a Google Drive folder"))
    mirrors: dict[str, str] = pydantic.Field(
        default_factory=dict, description="official base URL -> base URL to fetch from instead (same paths)")
    ocr_vqa_dataset: str = pydantic.Field(
        "", description=f"OCR-VQA's dataset.json: a local path or http(s) URL (upstream: the Google Drive folder "
                        f"{OCR_VQA_DRIVE_FOLDER})")
    ocr_vqa_image_size: int = pydantic.Field(0, description="short side of the saved covers in px (0 = source size)")
    ocr_vqa_quality: int = pydantic.Field(95, description="JPEG quality of the saved covers")
    retries: int = pydantic.Field(5, description="download attempts in a row without progress before giving up")
    timeout_s: float = pydantic.Field(60.0, description="seconds without data before an attempt is abandoned")

    def archives(self, root: str) -> list[ArchiveSpec]:
        """The configured archives of ``root`` (empty: none configured)."""
        return [a.spec() for a in getattr(self, field_name(root))]

    def fetch_url(self, url: str) -> str:
        """Where ``url`` is fetched from (its mirror, when one is configured)."""
        return mirrored(url, self.mirrors)

    def is_local(self, location: str) -> bool:
        return "://" not in location or location.startswith("file://")

    def local_path(self, location: str) -> Path:
        return Path(location.removeprefix("file://")).expanduser()
