"""MMC4-core output side, Dagster-free: filter policies, in-shard dedup, VILA pickles and their inspection.

``merge_shard`` turns one shard's validated docs plus its crawl results into VILA's record list: each
record is the original MMC4 doc, unchanged, with ``image_info[i]["image_base64"]`` (base64 JPEG ``str``)
added, in original line order. Policies:

- ``all_or_nothing`` (VILA): a doc survives only if every one of its images did;
- ``partial``: failed images are dropped together with their ``similarity_matrix`` rows; ``text_list`` is
  untouched, so every remaining ``matched_text_index`` stays valid; docs keep >= 1 image or are dropped.

Exact duplicates (same output JPEG bytes) inside a shard count as failed images: the first occurrence in
a *kept* doc wins, later ones are ``duplicate``. Under ``all_or_nothing`` that drops the later doc.

``inspect_shard`` reads a written shard back the way VILA's loader does and reports every contract
problem, exact duplicates and the pHash near-duplicate count; the asset checks are built on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import pickle
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.mmc4 import Mmc4FormatError, image_key
from vila_assets.core.vila_format import jpeg_to_base64, read_count

POLICIES = ("all_or_nothing", "partial")
DUPLICATE = "duplicate"

SAMPLE_COLUMNS = ["key", "url", "status", "error", "http_status", "attempts", "width", "height",
                  "orig_width", "orig_height", "sha256", "phash"]

DOCS_MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int32(), nullable=False),
        pa.field("where", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # kept | dropped | invalid
        pa.field("reason", pa.string()),
        pa.field("n_images", pa.int32()),
        pa.field("n_images_kept", pa.int32()),
        pa.field("kept_images", pa.list_(pa.int32())),  # indices into the original image_info
        pa.field("image_fates", pa.list_(pa.string())),  # per original image: ok | <crawl status> | duplicate
    ]
)


def load_samples(path: str | os.PathLike[str]) -> dict[str, dict]:
    """``samples.parquet`` rows by key (status, image bytes)."""
    table = pq.read_table(path, columns=["key", "url", "status", "image"])
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    return {k: {"url": u, "status": s, "image": b}
            for k, u, s, b in zip(cols["key"], cols["url"], cols["status"], cols["image"])}


def samples_manifest(samples_path: str | os.PathLike[str], crawl_input_path: str | os.PathLike[str]) -> pa.Table:
    """Per-image crawl status without the image bytes, plus the doc line and image index."""
    samples = pq.read_table(samples_path, columns=SAMPLE_COLUMNS)
    inputs = pq.read_table(crawl_input_path, columns=["key", "line", "image_index"])
    if samples.column("key").to_pylist() != inputs.column("key").to_pylist():
        raise Mmc4FormatError(f"{samples_path}: rows do not match {crawl_input_path} (stale crawl output)")
    return samples.append_column("line", inputs.column("line")).append_column(
        "image_index", inputs.column("image_index")
    )


@dataclass
class MergeResult:
    records: list[dict]
    doc_rows: list[dict]
    fates: Counter = field(default_factory=Counter)  # over images of valid docs
    docs_in: int = 0
    docs_invalid: int = 0
    docs_dropped: int = 0
    images_in: int = 0
    images_kept: int = 0
    jpeg_bytes: int = 0

    @property
    def docs_kept(self) -> int:
        return len(self.records)

    @property
    def doc_yield(self) -> float:
        """Docs written / docs read (invalid lines count against it)."""
        return self.docs_kept / self.docs_in if self.docs_in else 0.0

    @property
    def image_yield(self) -> float:
        """Images written / images of valid docs."""
        return self.images_kept / self.images_in if self.images_in else 0.0


def merge_shard(annotations: Iterable[dict], samples: Mapping[str, dict], policy: str = "all_or_nothing") -> MergeResult:
    """Apply ``policy`` and in-shard dedup; return VILA records (line order) and a per-doc manifest."""
    if policy not in POLICIES:
        raise ValueError(f"unknown filter policy {policy!r}; expected one of {POLICIES}")
    out = MergeResult([], [])
    seen: set[str] = set()  # sha256 of output JPEGs already in kept docs
    for row in annotations:
        out.docs_in += 1
        if row["status"] != "valid":
            out.docs_invalid += 1
            out.doc_rows.append({"line": row["line"], "where": row["where"], "status": "invalid",
                                 "reason": row["reason"], "n_images": None, "n_images_kept": 0,
                                 "kept_images": [], "image_fates": []})
            continue
        _merge_doc(out, row, samples, policy, seen)
    return out


def _crawled(row: dict, i: int, info: dict, samples: Mapping[str, dict]) -> dict:
    """The crawl result of image ``i`` of the doc in ``row``; refuses one crawled from another URL."""
    key = image_key(row["line"], i)
    sample = samples.get(key)
    if sample is None:
        raise Mmc4FormatError(f"{row['where']}: image {i} (key {key}) has no crawl result; rematerialize mmc4_images")
    if sample["url"] != info["raw_url"]:
        raise Mmc4FormatError(f"{row['where']}: image {i} was crawled from {sample['url']!r} but the doc now "
                              f"says {info['raw_url']!r}; rematerialize mmc4_images")
    return sample


def _image_fates(row: dict, infos: list[dict], samples: Mapping[str, dict],
                 seen: set[str]) -> tuple[list[str], list[bytes | None], list[str | None]]:
    """Per image of one doc: its fate (``ok``, the crawl status, or ``duplicate``), its bytes, and its
    sha256 when ``ok`` (a duplicate of a kept doc's image, or of an earlier image of this doc, is not)."""
    fates, images, digests = [], [], []
    for i, info in enumerate(infos):
        sample = _crawled(row, i, info, samples)
        img, digest = sample["image"], None
        if sample["status"] != "ok" or img is None:
            fate = sample["status"] if sample["status"] != "ok" else "failed_decode"
        else:
            digest = hashlib.sha256(img).hexdigest()
            fate = DUPLICATE if digest in seen or digest in digests else "ok"
        fates.append(fate)
        images.append(img)
        digests.append(digest if fate == "ok" else None)
    return fates, images, digests


def _merge_doc(out: MergeResult, row: dict, samples: Mapping[str, dict], policy: str, seen: set[str]) -> None:
    """Keep or drop one valid doc under ``policy``; a kept doc gets its images as base64."""
    base = {"line": row["line"], "where": row["where"]}
    doc = json.loads(row["doc_json"])
    infos = doc["image_info"]
    fates, images, digests = _image_fates(row, infos, samples, seen)
    out.images_in += len(infos)
    out.fates.update(fates)
    ok = [i for i, f in enumerate(fates) if f == "ok"]
    keep = len(ok) == len(infos) if policy == "all_or_nothing" else len(ok) >= 1
    lost = Counter(f for f in fates if f != "ok")
    lost_text = ", ".join(f"{n} {f}" for f, n in sorted(lost.items()))
    if not keep:
        out.docs_dropped += 1
        out.doc_rows.append({**base, "status": "dropped", "reason": f"images lost: {lost_text}",
                             "n_images": len(infos), "n_images_kept": 0, "kept_images": [], "image_fates": fates})
        return
    if len(ok) < len(infos):  # partial: drop failed images and their similarity rows together
        doc["similarity_matrix"] = [doc["similarity_matrix"][i] for i in ok]
    doc["image_info"] = [dict(infos[i], image_base64=jpeg_to_base64(images[i])) for i in ok]
    seen.update(digests[i] for i in ok)
    out.records.append(doc)
    out.images_kept += len(ok)
    out.jpeg_bytes += sum(len(images[i]) for i in ok)
    out.doc_rows.append({**base, "status": "kept", "reason": f"images dropped: {lost_text}" if lost else None,
                         "n_images": len(infos), "n_images_kept": len(ok), "kept_images": ok,
                         "image_fates": fates})


# --- reading a written shard back ---------------------------------------------------------------------


@dataclass
class ShardInspection:
    stem: str
    problems: list[str]
    n_docs: int = 0
    n_images: int = 0
    exact_duplicates: list[tuple[str, str]] = field(default_factory=list)  # (first, repeat) locations
    near_duplicates: int = 0  # images with a pHash neighbour (distance <= k) earlier in the shard
    near_examples: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def near_duplicate_rate(self) -> float:
        return self.near_duplicates / self.n_images if self.n_images else 0.0


def record_problems(doc, where: str) -> tuple[list[str], list[bytes]]:
    """Contract problems of one VILA MMC4 record, and the decoded JPEG bytes of its images."""
    if not isinstance(doc, dict):
        return [f"{where}: record is {type(doc).__name__}, not dict"], []
    problems: list[str] = []
    texts = doc.get("text_list")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        problems.append(f"{where}: text_list missing or not a list of str")
        texts = None
    infos = doc.get("image_info")
    if not isinstance(infos, list) or not infos:
        return problems + [f"{where}: image_info missing or empty"], []
    sim = doc.get("similarity_matrix")
    if not isinstance(sim, list) or len(sim) < len(infos):
        problems.append(f"{where}: similarity_matrix has {len(sim) if isinstance(sim, list) else 'no'} rows "
                        f"for {len(infos)} images (VILA's zip would drop images)")
    blobs: list[bytes] = []
    for i, info in enumerate(infos):
        tag = f"{where} image {i}"
        mti = info.get("matched_text_index") if isinstance(info, dict) else None
        if not isinstance(mti, int) or isinstance(mti, bool) or (texts is not None and not 0 <= mti < len(texts)):
            problems.append(f"{tag}: matched_text_index {mti!r} not a valid index into text_list")
        b64 = info.get("image_base64") if isinstance(info, dict) else None
        if not isinstance(b64, str):
            problems.append(f"{tag}: image_base64 missing or not str")
            continue
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{tag}: image_base64 is not valid base64")
            continue
        if raw[:3] != b"\xff\xd8\xff":
            problems.append(f"{tag}: image_base64 is not a JPEG")
            continue
        blobs.append(raw)
    return problems, blobs


def inspect_shard(directory: str | os.PathLike[str], stem: str, *, max_distance: int = 3,
                  max_problems: int = 20) -> ShardInspection:
    """Check one ``<stem>.pkl``/``<stem>.count`` pair as VILA's ``LazyMMC4Dataset`` would read it.

    Problems: foreign entries in the directory (they skew ``n_shards = len(listdir)//2``; atomic-write
    temp files of runs in flight are ignored), a missing half of the pair, a ``.count`` that is not an
    integer or differs from the pickle length, a pickle that is not a ``list[dict]``, and per record the
    :func:`record_problems`. Every image is decoded to RGB as the loader does. Also collects exact
    duplicates (sha256 of the JPEG bytes) and pHash near-duplicates (hamming <= ``max_distance``).
    """
    directory = Path(directory)
    result = ShardInspection(stem, _foreign_entries(directory))
    data = _load_pair(directory, stem, result.problems)
    if data is not None:
        result.n_docs = len(data)
        _inspect_records(result, data, max_distance)
    if len(result.problems) > max_problems:
        extra = len(result.problems) - max_problems
        result.problems = result.problems[:max_problems] + [f"... and {extra} more problems"]
    return result


def _foreign_entries(directory: Path) -> list[str]:
    """Entries that are not ``.pkl``/``.count`` (temp files of atomic writes in flight excepted)."""
    return [f"{directory / name}: not a .pkl/.count file (skews n_shards = len(listdir)//2)"
            for name in sorted(os.listdir(directory))
            if not (name.startswith(".") and ".tmp-" in name) and not name.endswith((".pkl", ".count"))]


def _load_pair(directory: Path, stem: str, problems: list[str]) -> list | None:
    """The pickle's list when there is one (pair problems go to ``problems``), else None."""
    pkl, count_path = directory / f"{stem}.pkl", directory / f"{stem}.count"
    problems.extend(f"{p}: missing" for p in (pkl, count_path) if not p.is_file())
    if not pkl.is_file():
        return None
    with open(pkl, "rb") as fh:
        data = pickle.load(fh)
    if not isinstance(data, list):
        problems.append(f"{pkl}: holds {type(data).__name__}, not list")
        return None
    if count_path.is_file():
        try:
            count = read_count(count_path)
            if count != len(data):
                problems.append(f"{count_path}: says {count} but the pickle holds {len(data)}")
        except ValueError:
            problems.append(f"{count_path}: not a decimal integer")
    return data


def _inspect_records(result: ShardInspection, data: list, max_distance: int) -> None:
    """Record problems, then every image decoded to RGB (exactly what the loader does) and deduplicated."""
    from PIL import Image

    dups = _DuplicateIndex(result, max_distance)
    for d, doc in enumerate(data):
        rec_problems, blobs = record_problems(doc, f"{result.stem}.pkl[{d}]")
        result.problems.extend(rec_problems)
        for i, raw in enumerate(blobs):
            where = f"{result.stem}.pkl[{d}] image {i}"
            result.n_images += 1
            try:
                img = Image.open(io.BytesIO(raw)).convert("RGB")
            except Exception as exc:  # noqa: BLE001 - any decoder error breaks training
                result.problems.append(f"{where}: JPEG does not decode ({type(exc).__name__})")
                continue
            dups.add(raw, img, where)


class _DuplicateIndex:
    """Exact (sha256) and near (pHash within ``max_distance``) duplicates of the images seen so far."""

    def __init__(self, result: ShardInspection, max_distance: int):
        self.result, self.max_distance = result, max_distance
        self.first_seen: dict[str, str] = {}
        self.hashes: list[int] = []
        self.where_of: list[str] = []

    def add(self, raw: bytes, img, where: str) -> None:
        from vila_assets.core.crawl.imaging import phash

        digest = hashlib.sha256(raw).hexdigest()
        if digest in self.first_seen:
            self.result.exact_duplicates.append((self.first_seen[digest], where))
            return
        self.first_seen[digest] = where
        h = int(phash(img), 16)
        if self.hashes:
            dist = np.bitwise_count(np.array(self.hashes, dtype=np.uint64) ^ np.uint64(h))
            j = int(np.argmin(dist))
            if dist[j] <= self.max_distance:
                self.result.near_duplicates += 1
                if len(self.result.near_examples) < 5:
                    self.result.near_examples.append((self.where_of[j], where, int(dist[j])))
        self.hashes.append(h)
        self.where_of.append(where)
