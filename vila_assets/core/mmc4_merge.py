"""MMC4-core output side, Dagster-free: the data policies' merge rules, VILA pickles and their inspection.

``merge_shard`` turns one shard's validated docs plus its crawl results into VILA's record list: each
record is the original MMC4 doc, unchanged, with ``image_info[i]["image_base64"]`` (base64 JPEG ``str``)
added, in original line order. The rules (:class:`MergeRules`, :func:`rules_for`) follow the data policy:

- ``vila`` reproduces VILA's ``mmc4_downloader.py`` + ``mmc4_filter_and_counter.py`` + ``mmc4_merger.py``:
  a doc survives only if every image did (all-or-nothing); no content dedup; an image whose local file
  name ``NNN.<raw_url.split(".")[-1]>`` cannot be saved (the URL's last dot comes before a ``/``, as in
  extensionless URLs) loses its doc, as the script's failed ``open`` does; images are attached in
  ``sorted(file name)`` order; sizes follow VILA's rule (short side 336 when larger, long side
  truncated: ``int(336 * long / short)``).
- ``curated`` keeps our improvements: docs with partial image success are kept (failed images dropped
  with their ``similarity_matrix`` rows; ``text_list`` untouched, so every ``matched_text_index`` stays
  valid), and byte-identical JPEGs are deduplicated across the docs of a shard (the first kept doc wins).
  Both are switches of the run config.

Under both, one URL used in several slots of a doc is ONE download serving each slot (never a duplicate
of itself), and a shard with no surviving doc gets no pickle, as VILA's downloader writes none.

``inspect_shard`` reads a written shard back the way VILA's loader does and reports every contract
problem, exact duplicates and the pHash near-duplicate count; :func:`published_counts` reads the
``.count`` files of a published directory the way the loader lists them, for the world-size check.
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

from vila_assets.core.mmc4 import Mmc4FormatError, slot_keys
from vila_assets.core.policy import DEFAULT_POLICY, Difference, Policy, as_policy
from vila_assets.core.vila_format import jpeg_to_base64, read_count

POLICY_DIFFERENCES = (
    Difference(
        "MMC4", "input shards",
        "unzipped `.jsonl` only; one malformed line crashes the run; docs its loader cannot read (no "
        "`text_list`, `matched_text_index` out of range) are kept",
        "zipped or plain shards, 4- or 5-key records; malformed lines and docs the loader cannot read are "
        "reported with file:line and left out (a crash or an IndexError in training is no data)",
        "same as `vila`"),
    Difference(
        "MMC4", "image download",
        "aiohttp: no retries, up to 10 redirects, any address, no opt-out header, no size cap",
        "our crawler under both policies: retries with backoff, 5 redirects, private addresses refused, "
        "`X-Robots-Tag: noai` honoured, 20 MiB and 64 MP caps; a URL used in two slots of a doc is one "
        "download serving both (VILA downloads it twice: same data)",
        "same as `vila`"),
    Difference(
        "MMC4", "doc filter",
        "all-or-nothing: one failed image drops the doc",
        "same",
        "docs keep their surviving images (failed ones dropped with their `similarity_matrix` rows); "
        "run config `keep_partial_docs`"),
    Difference(
        "MMC4", "local file names",
        "`NNN.<raw_url.split('.')[-1]>`: a URL whose last dot precedes a `/` (extensionless URLs) cannot "
        "be saved and its doc is lost; images attached in `sorted(file name)` order (past 999 images per "
        "doc, `1000.jpg` sorts before `101.jpg`)",
        "same",
        "no name is derived from a URL: such docs are kept; images in slot order"),
    Difference(
        "MMC4", "content dedup",
        "none",
        "same",
        "byte-identical images across the docs of a shard: the first kept doc wins, later copies count as "
        "failed images; run config `dedup_images`"),
    Difference(
        "MMC4", "imaging",
        "Pillow: `convert('RGB')` (alpha on black, EXIF orientation ignored), short side 336 when larger, "
        "long side `int(336 * long / short)`, bicubic, JPEG quality 75",
        "the crawler's decode (EXIF orientation applied, alpha on white, area/bilinear resize), then "
        "resized to VILA's size where the crawler's rounding differs: same sizes, not the same bytes",
        "the crawler's image as it comes (long side rounded, short side `crawler.image_size`)"),
    Difference(
        "MMC4", "pkl-core",
        "no `.count` files (the loader needs them); no pickle for a shard without surviving docs",
        "`.count` beside every `.pkl` (no data change); no pair for a shard without surviving docs",
        "same as `vila`"),
)

DUPLICATE = "duplicate"
# VILA's downloader could not open the local file it named after the URL (the doc is lost)
UNSAVEABLE_NAME = "unsaveable_name"
VILA_SHORT_SIDE = 336
VILA_JPEG_QUALITY = 75  # Pillow's default, which VILA's ``save(format="JPEG")`` uses
NAME_MAX = 255  # bytes in one file name on Linux file systems

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
        # per original image: ok | <crawl status> | duplicate | unsaveable_name
        pa.field("image_fates", pa.list_(pa.string())),
    ]
)


# --- rules --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeRules:
    """How one shard's docs and crawled images become records (see the module docstring)."""

    all_or_nothing: bool = True  # a doc survives only with every image; else failed images are dropped
    dedup: bool = False  # byte-identical JPEGs across the docs of a shard: the first kept doc wins
    vila_names: bool = False  # VILA's local file names: unsaveable names lose the doc; sorted-name order
    vila_sizes: bool = False  # VILA's resize rule: short side 336 when larger, long side truncated


def rules_for(policy: Policy | str = DEFAULT_POLICY, *, keep_partial_docs: bool = True,
              dedup_images: bool = True) -> MergeRules:
    """The rules of a data policy; the two switches apply to ``curated`` only (``vila`` is VILA's)."""
    if as_policy(policy) is Policy.vila:
        return MergeRules(all_or_nothing=True, dedup=False, vila_names=True, vila_sizes=True)
    return MergeRules(all_or_nothing=not keep_partial_docs, dedup=dedup_images)


def vila_file_name(image_index: int, url: str) -> str | None:
    """The file name VILA's downloader saves image ``image_index`` of a doc under, or None when that
    ``open`` fails (a ``/`` or NUL in the name, or longer than a file name may be)."""
    name = f"{image_index:03d}." + url.split(".")[-1]
    if "/" in name or "\0" in name or len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        return None
    return name


def vila_image_order(names: list[str]) -> list[int]:
    """Which downloaded image VILA's merger attaches to each slot: ``sorted(file names)`` order, which is
    slot order up to 1000 images and not beyond (``"1000.jpg" < "101.jpg"``)."""
    return sorted(range(len(names)), key=names.__getitem__)


def vila_size(width: int, height: int, short: int = VILA_SHORT_SIDE) -> tuple[int, int]:
    """VILA's output size for a ``width`` x ``height`` source (its downloader's expression, verbatim)."""
    if min(width, height) <= short:
        return width, height
    if height < width:
        return int(short * width / height), short
    return short, int(short * height / width)


def vila_sized(jpeg: bytes, sample: Mapping) -> tuple[bytes, bool]:
    """``jpeg`` at VILA's size for its source (``orig_width`` x ``orig_height``); resized (bicubic, JPEG
    quality 75, as VILA saves) only where the crawler's size differs. Returns (bytes, resized)."""
    from PIL import Image

    ow, oh = sample.get("orig_width"), sample.get("orig_height")
    if not ow or not oh:
        return jpeg, False
    want = vila_size(ow, oh)
    if (sample.get("width"), sample.get("height")) == want:
        return jpeg, False
    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    if img.size == want:
        return jpeg, False
    out = io.BytesIO()
    img.resize(want, Image.Resampling.BICUBIC).save(out, format="JPEG", quality=VILA_JPEG_QUALITY)
    return out.getvalue(), True


# --- crawl results --------------------------------------------------------------------------------------


def load_samples(path: str | os.PathLike[str]) -> dict[str, dict]:
    """``samples.parquet`` rows by key: url, status, sizes (output and source) and the image bytes."""
    columns = ["key", "url", "status", "width", "height", "orig_width", "orig_height", "image"]
    table = pq.read_table(path, columns=columns)
    cols = {name: table.column(name).to_pylist() for name in columns}
    return {k: {c: cols[c][n] for c in columns[1:]} for n, k in enumerate(cols["key"])}


def samples_manifest(samples_path: str | os.PathLike[str], crawl_input_path: str | os.PathLike[str]) -> pa.Table:
    """Per-image crawl status without the image bytes, plus the doc line and image index."""
    samples = pq.read_table(samples_path, columns=SAMPLE_COLUMNS)
    inputs = pq.read_table(crawl_input_path, columns=["key", "line", "image_index"])
    if samples.column("key").to_pylist() != inputs.column("key").to_pylist():
        raise Mmc4FormatError(f"{samples_path}: rows do not match {crawl_input_path} (stale crawl output)")
    return samples.append_column("line", inputs.column("line")).append_column(
        "image_index", inputs.column("image_index")
    )


# --- merging ----------------------------------------------------------------------------------------------


@dataclass
class MergeResult:
    records: list[dict]
    doc_rows: list[dict]
    fates: Counter = field(default_factory=Counter)  # over image slots of valid docs
    docs_in: int = 0
    docs_invalid: int = 0
    docs_dropped: int = 0
    images_in: int = 0
    images_kept: int = 0
    shared_slots: int = 0  # slots served by the download of an earlier slot with the same URL
    images_resized: int = 0  # images brought to VILA's size (vila policy)
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


def merge_shard(annotations: Iterable[dict], samples: Mapping[str, dict],
                rules: MergeRules | None = None) -> MergeResult:
    """Apply ``rules`` (default: the default policy's); return VILA records (line order) and a per-doc
    manifest."""
    rules = rules or rules_for()
    out = MergeResult([], [])
    seen: set[str] = set()  # sha256 of output JPEGs already in kept docs (dedup)
    for row in annotations:
        out.docs_in += 1
        if row["status"] != "valid":
            out.docs_invalid += 1
            out.doc_rows.append({"line": row["line"], "where": row["where"], "status": "invalid",
                                 "reason": row["reason"], "n_images": None, "n_images_kept": 0,
                                 "kept_images": [], "image_fates": []})
            continue
        _merge_doc(out, row, samples, rules, seen)
    return out


def _crawled(row: dict, i: int, key: str, info: dict, samples: Mapping[str, dict]) -> dict:
    """The crawl result serving image ``i`` of the doc in ``row``; refuses one crawled from another URL."""
    sample = samples.get(key)
    if sample is None:
        raise Mmc4FormatError(f"{row['where']}: image {i} (key {key}) has no crawl result; rematerialize mmc4_images")
    if sample["url"] != info["raw_url"]:
        raise Mmc4FormatError(f"{row['where']}: image {i} was crawled from {sample['url']!r} but the doc now "
                              f"says {info['raw_url']!r}; rematerialize mmc4_images")
    return sample


@dataclass(frozen=True)
class _Slot:
    """One image slot's outcome: its fate, and for ``ok`` its bytes, sha256 and crawl result."""

    fate: str
    image: bytes | None = None
    digest: str | None = None
    sample: Mapping | None = None


def _fetched(sample: Mapping, rules: MergeRules, seen: set[str], doc_digests: set[str]) -> _Slot:
    img = sample["image"]
    if sample["status"] != "ok" or img is None:
        return _Slot(sample["status"] if sample["status"] != "ok" else "failed_decode")
    digest = hashlib.sha256(img).hexdigest()
    if rules.dedup and (digest in seen or digest in doc_digests):
        return _Slot(DUPLICATE)
    return _Slot("ok", img, digest, sample)


def _slots(row: dict, infos: list[dict], samples: Mapping[str, dict], rules: MergeRules,
           seen: set[str]) -> list[_Slot]:
    """Per image slot of one doc: the outcome of the download serving it (shared by every slot with the
    same URL), or ``unsaveable_name`` where VILA's file name could not be opened (vila rules)."""
    by_key: dict[str, _Slot] = {}
    doc_digests: set[str] = set()
    slots = []
    for i, (info, key) in enumerate(zip(infos, slot_keys(row["line"], infos))):
        if key not in by_key:
            by_key[key] = _fetched(_crawled(row, i, key, info, samples), rules, seen, doc_digests)
            if by_key[key].digest:
                doc_digests.add(by_key[key].digest)
        slot = by_key[key]
        if rules.vila_names and slot.fate == "ok" and vila_file_name(i, info["raw_url"]) is None:
            slot = _Slot(UNSAVEABLE_NAME)
        slots.append(slot)
    return slots


def _drop(out: MergeResult, base: dict, n_images: int, fates: list[str], lost_text: str) -> None:
    out.docs_dropped += 1
    out.doc_rows.append({**base, "status": "dropped", "reason": f"images lost: {lost_text}",
                         "n_images": n_images, "n_images_kept": 0, "kept_images": [], "image_fates": fates})


def _merge_doc(out: MergeResult, row: dict, samples: Mapping[str, dict], rules: MergeRules, seen: set[str]) -> None:
    """Keep or drop one valid doc under ``rules``; a kept doc gets its images as base64."""
    base = {"line": row["line"], "where": row["where"]}
    doc = json.loads(row["doc_json"])
    infos = doc["image_info"]
    slots = _slots(row, infos, samples, rules, seen)
    fates = [s.fate for s in slots]
    out.images_in += len(infos)
    out.fates.update(fates)
    out.shared_slots += len(infos) - len(set(slot_keys(row["line"], infos)))
    ok = [i for i, f in enumerate(fates) if f == "ok"]
    lost = Counter(f for f in fates if f != "ok")
    lost_text = ", ".join(f"{n} {f}" for f, n in sorted(lost.items()))
    if not ok or (rules.all_or_nothing and lost):
        _drop(out, base, len(infos), fates, lost_text)
        return
    if lost:  # partial: drop failed images and their similarity rows together
        doc["similarity_matrix"] = [doc["similarity_matrix"][i] for i in ok]
    doc["image_info"] = [dict(infos[i], image_base64=jpeg_to_base64(img))
                         for i, img in zip(ok, _attached_images(out, infos, slots, ok, rules))]
    seen.update(slots[i].digest for i in ok)
    out.records.append(doc)
    out.images_kept += len(ok)
    out.doc_rows.append({**base, "status": "kept", "reason": f"images dropped: {lost_text}" if lost else None,
                         "n_images": len(infos), "n_images_kept": len(ok), "kept_images": ok,
                         "image_fates": fates})


def _attached_images(out: MergeResult, infos: list[dict], slots: list[_Slot], ok: list[int],
                     rules: MergeRules) -> list[bytes]:
    """The JPEG attached to each kept slot, in slot order: VILA-sized and in VILA's sorted-name order
    under the vila rules."""
    images = []
    for i in ok:
        img = slots[i].image
        if rules.vila_sizes:
            img, resized = vila_sized(img, slots[i].sample)
            out.images_resized += resized
        images.append(img)
    if rules.vila_names:
        names = [vila_file_name(i, infos[i]["raw_url"]) for i in ok]
        images = [images[j] for j in vila_image_order(names)]
    out.jpeg_bytes += sum(len(img) for img in images)
    return images


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


def record_problems(doc, where: str) -> tuple[list[str], list[tuple[int, bytes]]]:
    """Contract problems of one VILA MMC4 record, and the decoded JPEG bytes of its images by slot."""
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
    blobs: list[tuple[int, bytes]] = []
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
        blobs.append((i, raw))
    return problems, blobs


def inspect_shard(directory: str | os.PathLike[str], stem: str, *, max_distance: int = 3,
                  max_problems: int = 20, expect_pair: bool = True) -> ShardInspection:
    """Check one ``<stem>.pkl``/``<stem>.count`` pair as VILA's ``LazyMMC4Dataset`` would read it.

    Problems: foreign entries in the directory (they skew ``n_shards = len(listdir)//2``; atomic-write
    temp files of runs in flight are ignored), a missing half of the pair, a ``.count`` that is not an
    integer or differs from the pickle length, a pickle that is not a ``list[dict]``, and per record the
    :func:`record_problems`. Every image is decoded to RGB as the loader does. Also collects exact
    duplicates (sha256 of the JPEG bytes; one URL reused in two slots of a doc is not one) and pHash
    near-duplicates (hamming <= ``max_distance``). ``expect_pair=False`` (a shard without surviving docs):
    neither file may exist.
    """
    directory = Path(directory)
    result = ShardInspection(stem, _foreign_entries(directory) if directory.is_dir() else [])
    if not expect_pair:
        result.problems += [f"{p}: left over, but the shard has no surviving doc" for p in
                            (directory / f"{stem}.pkl", directory / f"{stem}.count") if p.exists()]
        return result
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
            if not _in_flight(name) and not name.endswith((".pkl", ".count"))]


def _in_flight(name: str) -> bool:
    """A temp file of an atomic write (``core.atomic``) that another run is finishing."""
    return name.startswith(".") and ".tmp-" in name


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
        for i, raw in blobs:
            where = f"{result.stem}.pkl[{d}] image {i}"
            result.n_images += 1
            try:
                img = Image.open(io.BytesIO(raw)).convert("RGB")
            except Exception as exc:  # noqa: BLE001 - any decoder error breaks training
                result.problems.append(f"{where}: JPEG does not decode ({type(exc).__name__})")
                continue
            dups.add(raw, img, where, (d, doc["image_info"][i].get("raw_url")))


class _DuplicateIndex:
    """Exact (sha256) and near (pHash within ``max_distance``) duplicates of the images seen so far.
    ``owner`` (doc index, URL): the same image again under the same owner is one URL serving two slots
    of a doc, not a duplicate."""

    def __init__(self, result: ShardInspection, max_distance: int):
        self.result, self.max_distance = result, max_distance
        self.first_seen: dict[str, tuple[str, tuple]] = {}
        self.hashes: list[int] = []
        self.where_of: list[str] = []

    def add(self, raw: bytes, img, where: str, owner: tuple) -> None:
        from vila_assets.core.crawl.imaging import phash

        digest = hashlib.sha256(raw).hexdigest()
        if digest in self.first_seen:
            first_where, first_owner = self.first_seen[digest]
            if first_owner != owner:
                self.result.exact_duplicates.append((first_where, where))
            return
        self.first_seen[digest] = (where, owner)
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


# --- the published directory at the training world size ---------------------------------------------------


def published_counts(url: str, storage_options: Mapping | None = None) -> list[tuple[str, int]]:
    """``(stem, count)`` of a published shard directory (a local path or an fsspec URL), as VILA's loader
    lists it: ``n_shards = len(listdir) // 2``, then the sorted ``.count`` names cut to ``n_shards``.
    Only the small ``.count`` files are read (fetched together where the file system is asynchronous)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    if not fs.isdir(path):
        return []
    names = sorted(n for n in (p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
                   if not _in_flight(n))
    counts = sorted(n for n in names if n.endswith(".count"))[: len(names) // 2]
    blobs = {k.rsplit("/", 1)[-1]: v for k, v in fs.cat([f"{path}/{n}" for n in counts]).items()} if counts else {}
    out = []
    for name in counts:
        try:
            out.append((name.removesuffix(".count"), int(blobs[name].decode().strip())))
        except (KeyError, UnicodeDecodeError, ValueError):
            raise Mmc4FormatError(f"{url.rstrip('/')}/{name}: not a decimal integer count") from None
    return out
