"""OCR-VQA's book covers: ``dataset.json`` in, ``ocr_vqa/images/<id>.jpg`` out, through the image crawler.

OCR-VQA ships no images, only ``dataset.json`` (with ``loadDataset.py``, in a Google Drive folder): an object
keyed by book id (ISBN-10 style, e.g. ``1437717772``) whose values carry ``imageURL`` (an Amazon cover URL),
``questions``, ``answers``, ``title``, ``authorName``, ``genre`` and ``split`` [I]. LLaVA saves every
cover as ``<id>.jpg`` (its README: "we save all files as .jpg"), and mix665k references exactly those
names. Covers come through ``core.crawl`` (address policy, retries, byte and pixel caps, decode checks),
which re-encodes each as a JPEG; a GIF cover therefore becomes a real JPEG under its ``.jpg`` name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from vila_assets.core.crawl import CrawlConfig

_BOOK_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
SOURCE_RESOLUTION = 1 << 15  # a crawl image_size no cover reaches: covers keep their own size


class OcrVqaError(ValueError):
    """An unreadable ``dataset.json``; the message names the file and the book."""


def read_covers(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{book id: cover URL}`` from ``dataset.json``, in the file's order."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OcrVqaError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise OcrVqaError(f"{path}: expected an object keyed by book id, got a {type(data).__name__}")
    covers = {}
    for book, entry in data.items():
        if not _BOOK_ID.fullmatch(book):
            raise OcrVqaError(f"{path}: book id {book!r} is not a plain file name")
        url = entry.get("imageURL") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url:
            raise OcrVqaError(f"{path}: book {book!r} has no imageURL")
        covers[book] = url
    return covers


def book_id(name: str) -> str:
    """The book id of a cover file name (``1437717772.jpg`` -> ``1437717772``)."""
    return name.rsplit(".", 1)[0]


def write_crawl_input(path: Path, covers: Iterable[tuple[str, str]]) -> int:
    """The crawler's JSONL input: one ``{"key": book id, "url": cover URL}`` per cover."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for book, url in covers:
            fh.write(json.dumps({"key": book, "url": url}) + "\n")
            n += 1
    return n


def cover_config(base: CrawlConfig, image_size: int = 0, quality: int = 95) -> CrawlConfig:
    """The crawler's options for covers: ``image_size`` 0 keeps each cover's own size (text on a cover is
    small; a 336 px cover would blur it), a high JPEG quality for the same reason."""
    return dataclasses.replace(base, image_size=image_size or SOURCE_RESOLUTION, quality=quality)


@dataclass
class SavedCovers:
    saved: int = 0
    statuses: Counter = field(default_factory=Counter)  # crawler status -> covers
    failed: dict[str, str] = field(default_factory=dict)  # book id -> why it is not saved


def save_covers(samples: Path, dest: Path) -> SavedCovers:
    """Write each crawled cover (``samples.parquet``) as ``dest/<id>.jpg``; the rest are listed by reason."""
    dest.mkdir(parents=True, exist_ok=True)
    out = SavedCovers()
    pf = pq.ParquetFile(samples)
    for batch in pf.iter_batches(columns=["key", "status", "error", "image"], batch_size=1024):
        cols = batch.to_pydict()
        for key, status, error, image in zip(cols["key"], cols["status"], cols["error"], cols["image"]):
            out.statuses[status] += 1
            if status != "ok" or not image:
                out.failed[key] = f"{status}: {error}" if error else status
                continue
            (dest / f"{key}.jpg").write_bytes(image)
            out.saved += 1
    return out
