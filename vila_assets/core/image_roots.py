"""The image folders the SFT data resolves its images against, under ``./playground/data`` (LLaVA-1.5 README,
ShareGPT4V ``docs/Data.md``): where each comes from, how it is put in place, and how much of what the SFT
files reference it holds.

Three ways in:

- **official archives** (COCO, GQA, TextVQA, Visual Genome parts 1 and 2; the ShareGPT4V-only roots from
  whatever archives a deployment configures): downloaded with resumable HTTP ranges
  (``core.ranged_download``), unpacked safely (``core.safe_zip`` / ``core.safe_tar``) into a staging
  folder beside the root, and renamed into place, so the root is the old tree or the whole new one;
- **a hub archive**: ``llava/llava_pretrain/images`` is ``images.zip`` of ``liuhaotian/LLaVA-Pretrain``;
- **a crawl**: OCR-VQA's book covers (``core.ocr_vqa``).

Coverage (:func:`coverage`) is what VILA's loader will meet: the share of the images that mix665k and the
ShareGPT4V outputs reference under a root that exist there, and the names that do not.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vila_assets.core.atomic import fresh_temp_dir, replace_dir
from vila_assets.core.llava_json import KNOWN_IMAGE_ROOTS, image_root, iter_json_array, record_images
from vila_assets.core.policy import Difference
from vila_assets.core.safe_tar import safe_untar
from vila_assets.core.safe_zip import ExtractSummary, UnsafeZipError, ZipLimits, safe_extract

IMAGE_ROOTS: tuple[str, ...] = KNOWN_IMAGE_ROOTS


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive of a root. ``strip``: the folder inside the archive that holds the root's files
    (``train2017`` in COCO's ``train2017.zip``; ``""``: the archive's top level). ``include``: a glob on
    file names to keep (SA-1B tars carry a ``.json`` beside every image); ``""`` keeps every file.
    ``size`` / ``sha256``: verified when given."""

    url: str
    strip: str = ""
    include: str = ""
    size: int | None = None
    sha256: str | None = None


# The folder inside each official archive is [I] (the LLaVA README unzips them so that these paths result).
OFFICIAL_ARCHIVES: dict[str, tuple[ArchiveSpec, ...]] = {
    "coco/train2017": (ArchiveSpec("http://images.cocodataset.org/zips/train2017.zip", "train2017"),),
    "gqa/images": (ArchiveSpec("https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip", "images"),),
    "textvqa/train_images": (
        ArchiveSpec("https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip", "train_images"),),
    # part 1's URL is also under VG_100K_2/ (sic, upstream)
    "vg/VG_100K": (ArchiveSpec("https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip", "VG_100K"),),
    "vg/VG_100K_2": (ArchiveSpec("https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip", "VG_100K_2"),),
}
# ShareGPT4V's own roots: SA-1B tars behind expiring signed links, and web images shared through a Google
# Drive folder ([U]): no stable URL to default to, so a deployment names its archives.
SHAREGPT4V_ROOTS: tuple[str, ...] = (
    "sam/images", "wikiart/images", "web-celebrity/images", "web-landmark/images", "share_textvqa/images")
HUB_ROOT = "llava/llava_pretrain/images"  # images.zip of liuhaotian/LLaVA-Pretrain, files at its top level [I]
CRAWLED_ROOT = "ocr_vqa/images"
ARCHIVE_ROOTS: tuple[str, ...] = tuple(r for r in IMAGE_ROOTS if r not in (HUB_ROOT, CRAWLED_ROOT))
# hosts of the official files, for a profile that maps them to a mirror (OCR-VQA's covers included)
OFFICIAL_HOSTS: tuple[str, ...] = (
    "http://images.cocodataset.org", "https://downloads.cs.stanford.edu", "https://dl.fbaipublicfiles.com",
    "https://cs.stanford.edu", "http://ecx.images-amazon.com")

POLICY_DIFFERENCES = (
    Difference(
        "image roots", "OCR-VQA cover format",
        "LLaVA's copy of `loadDataset.py` saves each cover's bytes as `<id>.jpg`, whatever they are (GIF and PNG "
        "covers keep their format under the .jpg name)",
        "every cover crawled and re-encoded as a real JPEG at its source resolution (pixels within JPEG loss of "
        "the script's)",
        "same as `vila`"),
    Difference(
        "image roots", "OCR-VQA covers fetched",
        "every book of `dataset.json` (~207K covers)",
        "same",
        "only the covers mix665k and the ShareGPT4V outputs reference"),
)


class RootError(RuntimeError):
    """An image root that cannot be put in place; the message names the root and the archive or file."""


def field_name(root: str) -> str:
    """The source resource's field for ``root``: ``coco/train2017`` -> ``coco_train2017``."""
    return "".join(c if c.isalnum() else "_" for c in root).lower()


# --- putting a root in place ---------------------------------------------------------------------------


def unpack(archive: Path, dest: Path, limits: ZipLimits = ZipLimits()) -> ExtractSummary:
    """Safely extract a zip or a tar (told apart by content, not name) into the new directory ``dest``."""
    if zipfile.is_zipfile(archive):
        return safe_extract(archive, dest, limits)
    if tarfile.is_tarfile(archive):
        return safe_untar(archive, dest, limits)
    raise UnsafeZipError(f"{archive}: neither a zip nor a tar archive")


def _stripped(unpacked: Path, spec: ArchiveSpec, archive: Path) -> Path:
    src = unpacked / spec.strip if spec.strip else unpacked
    if not src.is_dir():
        top = sorted(p.name + ("/" if p.is_dir() else "") for p in unpacked.iterdir())[:10]
        raise RootError(f"{archive} ({spec.url}): no folder {spec.strip!r} in the archive; its top level holds {top}")
    return src


def _merge(src: Path, tree: Path, spec: ArchiveSpec, archive: Path) -> None:
    """Move the files of ``src`` (those ``spec.include`` keeps) into ``tree``; a name another archive of
    the root already gave is an error, never a silent replacement."""
    if not spec.include and not any(tree.iterdir()):
        tree.rmdir()
        os.replace(src, tree)
        return
    for dirpath, _, filenames in os.walk(src):
        for name in filenames:
            if spec.include and not fnmatch.fnmatchcase(name, spec.include):
                continue
            rel = Path(dirpath, name).relative_to(src)
            target = tree / rel
            if target.exists():
                raise RootError(f"{archive} ({spec.url}): {rel.as_posix()} is also in an earlier archive of this root")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(dirpath, name), target)


def count_files(tree: Path) -> tuple[int, int]:
    """(files, bytes) under ``tree``."""
    files = size = 0
    for dirpath, _, filenames in os.walk(tree):
        for name in filenames:
            files += 1
            size += os.stat(os.path.join(dirpath, name)).st_size
    return files, size


def staging_dir(dest: Path) -> Path:
    """A fresh folder beside ``dest`` (same file system, so the final rename is atomic); what a killed
    install of ``dest`` left beside it is removed first (:func:`~vila_assets.core.atomic.fresh_temp_dir`)."""
    return fresh_temp_dir(dest)


def install_root(dest: Path, archives: Sequence[tuple[Path, ArchiveSpec]],
                 limits: ZipLimits = ZipLimits()) -> tuple[int, int]:
    """Unpack ``archives`` (local file, spec) into one tree and put it at ``dest``; returns (files, bytes)."""
    if not archives:
        raise RootError(f"{dest}: no archive to install")
    staging = staging_dir(dest)
    try:
        tree = staging / "root"
        tree.mkdir()
        for i, (path, spec) in enumerate(archives):
            unpacked = staging / f"archive-{i}"
            try:
                unpack(path, unpacked, limits)
            except UnsafeZipError as exc:
                raise UnsafeZipError(f"{spec.url}: {exc}") from exc  # the local copy's name alone says little
            _merge(_stripped(unpacked, spec, path), tree, spec, path)
            shutil.rmtree(unpacked, ignore_errors=True)
        counted = count_files(tree)
        replace_dir(tree, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counted


# --- coverage ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    root: str
    referenced: int
    present: int
    missing: tuple[str, ...] = field(default=())  # names relative to the root, sorted

    @property
    def share(self) -> float:
        """present / referenced; 1.0 when nothing under the root is referenced."""
        return self.present / self.referenced if self.referenced else 1.0


def references_by_root(files: Iterable[Path], roots: Iterable[str] = IMAGE_ROOTS) -> dict[str, set[str]]:
    """``{root: names relative to it}`` of every image the LLaVA-format JSON ``files`` reference (streamed)."""
    out: dict[str, set[str]] = {r: set() for r in roots}
    for path in files:
        for rec in iter_json_array(path):
            if not isinstance(rec, dict):
                continue
            for image in record_images(rec):
                root = image_root(image) if isinstance(image, str) else None
                if root in out:
                    out[root].add(image[len(root) + 1:])
    return out


def coverage(root: str, folder: Path, names: Iterable[str]) -> Coverage:
    """How many of ``names`` are files under ``folder`` (the root's directory), and which are not."""
    names = sorted(set(names))
    missing = tuple(n for n in names if not (folder / n).is_file())
    return Coverage(root, len(names), len(names) - len(missing), missing)
