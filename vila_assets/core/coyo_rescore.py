"""COYO re-score: CLIP scores of what was actually downloaded, the keep/drop decision per pair, and the
per-shard outputs (per-sample Parquet manifest + VILA's per-shard ``coyo`` pickle). Dagster-free.

The 2021 metadata scores describe the images Kakao Brain crawled; today many of those URLs serve a
placeholder or a different picture. Pairs whose fresh score falls below a threshold are dropped, and the
agreement between metadata and fresh scores is reported.

Everything streams in rank order: the selection, the crawler's ``samples.parquet`` and the manifest all
hold one row per selected row in the same order, so they are read in lockstep, ``batch_rows`` at a time.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_open, atomic_path
from vila_assets.core.vila_format import jpeg_to_base64

ScoreFn = Callable[[list[bytes], list[str]], np.ndarray]

# Why a selected row is not in the output; None in the manifest means kept.
DROP_CRAWL = "crawl: {status}"
DROP_NO_TEXT = "missing text"
DROP_UNSCORABLE = "fresh score unavailable (image not decodable by the scorer)"
DROP_BELOW = "fresh clip score below threshold"
DROP_BEYOND_TARGET = "beyond the target after re-ranking by fresh score"

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("id", pa.int64(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("text", pa.string()),
        pa.field("clip_sim", pa.float64(), nullable=False),  # metadata vitb32 + vitl14
        pa.field("clip_similarity_vitb32", pa.float64(), nullable=False),
        pa.field("crawl_status", pa.string(), nullable=False),
        pa.field("crawl_error", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.string()),
        pa.field("fresh_clip_sim", pa.float32()),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("drop_reason", pa.string()),
    ]
)



@dataclass(frozen=True)
class RescoreConfig:
    min_fresh_score: float
    target: int | None = None  # keep at most this many (the oversample case); None keeps every passing pair
    vila_target: int | None = None  # int(0.2 n): the metadata "pass" set for the agreement figure
    batch_rows: int = 256


@dataclass
class RescoreSummary:
    selected: int
    crawl_counts: dict[str, int]
    scored: int
    below_threshold: int
    beyond_target: int
    kept: int
    dropped: dict[str, int]
    threshold: float
    spearman_vs_metadata_sum: float | None
    spearman_vs_metadata_vitb32: float | None
    pass_agreement: float | None  # share of scored pairs where metadata and fresh score agree on keep/drop
    exact_duplicate_rate: float
    near_duplicate_rate: float
    fresh_scores: list[float] = field(default_factory=list, repr=False)  # of scored pairs, for the histogram

    @property
    def downloaded(self) -> int:
        return self.crawl_counts.get("ok", 0)

    @property
    def yield_downloaded(self) -> float:
        return self.downloaded / self.selected if self.selected else 0.0

    @property
    def yield_kept(self) -> float:
        return self.kept / self.selected if self.selected else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("fresh_scores")
        return d


class LockstepError(ValueError):
    """Two per-shard files that must list the same rows in the same order do not."""


def _iter_rows(path: str | os.PathLike[str], columns: list[str] | None, batch_rows: int) -> Iterator[dict]:
    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()


def iter_lockstep(
    left: str | os.PathLike[str],
    right: str | os.PathLike[str],
    right_columns: list[str],
    batch_rows: int = 256,
    left_columns: list[str] | None = None,
) -> Iterator[list[tuple[dict, dict]]]:
    """Batches of ``(left row, right row)``; ``left`` has ``id``, ``right`` the crawler's ``key`` = str(id)."""
    n_left, n_right = (pq.ParquetFile(p).metadata.num_rows for p in (left, right))
    if n_left != n_right:
        raise LockstepError(f"{right} has {n_right} rows but {left} has {n_left}; rerun the crawl of this shard")
    a = _iter_rows(left, left_columns, batch_rows)
    b = _iter_rows(right, right_columns, batch_rows)
    batch: list[tuple[dict, dict]] = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if y["key"] != str(x["id"]):
            raise LockstepError(f"{right} row {i}: key {y['key']!r} but {left} has id {x['id']}; files out of step")
        batch.append((x, y))
        if len(batch) == batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------- stats


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties sharing their average rank (as scipy.stats.rankdata, minus one)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    return (start + (counts - 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation; None when undefined (fewer than 3 pairs or a constant side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3:
        return None
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def duplicate_rates(sha256s: list[str | None], phashes: list[str | None], max_distance: int = 4) -> tuple[float, float]:
    """(exact, near) duplicate rates: the share of images that repeat an earlier one byte for byte, and the
    share within ``max_distance`` bits of an earlier one's 64-bit pHash (exact repeats included).

    Near matches are found by banding: split the hash into ``max_distance + 1`` bands; two hashes within
    the distance agree exactly on at least one band (pigeonhole), so only bucket-mates are compared.
    """
    n = len(sha256s)
    if n == 0:
        return 0.0, 0.0
    seen: set[str] = set()
    exact = 0
    for s in sha256s:
        if s is not None and s in seen:
            exact += 1
        elif s is not None:
            seen.add(s)
    bands = max_distance + 1
    width = math.ceil(64 / bands)
    buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    known: set[int] = set()
    near = 0
    for h in phashes:
        if h is None:
            continue
        v = int(h, 16)
        parts = [(v >> (i * width)) & ((1 << width) - 1) for i in range(bands)]
        if v in known or any(
            (v ^ u).bit_count() <= max_distance for i, p in enumerate(parts) for u in buckets[i].get(p, ())
        ):
            near += 1
        if v not in known:
            known.add(v)
            for i, p in enumerate(parts):
                buckets[i].setdefault(p, []).append(v)
    return exact / n, near / n


# -------------------------------------------------------------------------------------------- outputs


def write_pickled_list(path: str | os.PathLike[str], records: Iterable[dict], appends_per_batch: int = 1000) -> int:
    """Write ``records`` as one pickled ``list`` without holding them all: ``pickle.load`` returns the list.

    The stream is what ``pickle.dump(list)`` emits in protocol 3 (``]`` then batches of ``( ... e``), with
    each element pickled on its own; every element's memo entries are self-contained, so the elements
    never refer to one another. Returns the number of records. Deterministic bytes for the same records.
    """
    n = 0
    with atomic_open(path, "wb") as fh:
        fh.write(pickle.PROTO + bytes([3]) + pickle.EMPTY_LIST)
        open_batch = False
        for rec in records:
            if not open_batch:
                fh.write(pickle.MARK)
                open_batch = True
            body = pickle.dumps(rec, protocol=3)
            fh.write(body[2:-1])  # strip PROTO 3 and STOP
            n += 1
            if n % appends_per_batch == 0:
                fh.write(pickle.APPENDS)
                open_batch = False
        if open_batch:
            fh.write(pickle.APPENDS)
        fh.write(pickle.STOP)
    return n


def iter_kept_records(
    manifest_path: str | os.PathLike[str], samples_path: str | os.PathLike[str], batch_rows: int = 256
) -> Iterator[dict]:
    """The shard's output records in rank order: VILA's ``{id, url, text, clip_sim, image}``."""
    cols = ["rank", "id", "url", "text", "clip_sim", "kept"]
    for batch in iter_lockstep(manifest_path, samples_path, ["key", "image"], batch_rows, left_columns=cols):
        for m, s in batch:
            if m["kept"]:
                if not s["image"]:
                    raise LockstepError(f"{samples_path}: id {m['id']} is kept in {manifest_path} but has no image")
                yield {
                    "id": m["id"],
                    "url": m["url"],
                    "text": m["text"],
                    "clip_sim": m["clip_sim"],
                    "image": jpeg_to_base64(s["image"]),
                }


def rescore_shard(
    selection_path: str | os.PathLike[str],
    samples_path: str | os.PathLike[str],
    score_fn: ScoreFn,
    config: RescoreConfig,
    manifest_path: str | os.PathLike[str],
    pickle_path: str | os.PathLike[str] | None = None,
) -> RescoreSummary:
    """Score every downloaded pair, decide what to keep, write the manifest (and the shard pickle).

    Two lockstep passes over selection + samples: the first scores (holding one float per row), the second
    writes the manifest. Then the pickle streams from manifest + samples.
    """
    m = pq.ParquetFile(selection_path).metadata.num_rows
    fresh = np.full(m, np.nan, dtype=np.float32)
    meta_sum = np.zeros(m, dtype=np.float64)
    meta_b32 = np.zeros(m, dtype=np.float64)
    status: list[str] = []
    has_text = np.zeros(m, dtype=bool)
    i = 0
    for batch in iter_lockstep(selection_path, samples_path, ["key", "status", "image"], config.batch_rows):
        idx, images, texts = [], [], []
        for sel, smp in batch:
            status.append(smp["status"])
            meta_sum[i], meta_b32[i] = sel["clip_sim"], sel["clip_similarity_vitb32"]
            has_text[i] = bool(sel["caption"] and sel["caption"].strip())
            if smp["status"] == "ok" and has_text[i] and smp["image"]:
                idx.append(i)
                images.append(smp["image"])
                texts.append(sel["caption"])
            i += 1
        if idx:
            scores = np.asarray(score_fn(images, texts), dtype=np.float32)
            if scores.shape != (len(idx),):
                raise ValueError(f"scorer returned shape {scores.shape} for {len(idx)} pairs")
            fresh[idx] = scores

    ok = np.array([s == "ok" for s in status], dtype=bool)
    scored = ~np.isnan(fresh)
    passing = scored & (fresh >= config.min_fresh_score)
    kept = passing.copy()
    beyond = np.zeros(m, dtype=bool)
    if config.target is not None and passing.sum() > config.target:
        cand = np.flatnonzero(passing)
        order = cand[np.lexsort((cand, -fresh[cand]))]  # fresh score desc, then selection rank
        beyond[order[config.target :]] = True
        kept &= ~beyond

    reasons: list[str | None] = []
    for j in range(m):
        if kept[j]:
            reasons.append(None)
        elif not ok[j]:
            reasons.append(DROP_CRAWL.format(status=status[j]))
        elif not has_text[j]:
            reasons.append(DROP_NO_TEXT)
        elif not scored[j]:
            reasons.append(DROP_UNSCORABLE)
        elif beyond[j]:
            reasons.append(DROP_BEYOND_TARGET)
        else:
            reasons.append(DROP_BELOW)

    sha, ph = [], []
    with atomic_path(manifest_path) as tmp, pq.ParquetWriter(tmp, MANIFEST_SCHEMA, compression="zstd") as writer:
        j = 0
        cols = ["key", "status", "error", "http_status", "width", "height", "sha256", "phash"]
        for batch in iter_lockstep(selection_path, samples_path, cols, config.batch_rows):
            rows = []
            for sel, smp in batch:
                rows.append(
                    {
                        "rank": sel["rank"],
                        "id": sel["id"],
                        "url": sel["url"],
                        "text": sel["caption"],
                        "clip_sim": sel["clip_sim"],
                        "clip_similarity_vitb32": sel["clip_similarity_vitb32"],
                        "crawl_status": smp["status"],
                        "crawl_error": smp["error"],
                        "http_status": smp["http_status"],
                        "width": smp["width"],
                        "height": smp["height"],
                        "sha256": smp["sha256"],
                        "phash": smp["phash"],
                        "fresh_clip_sim": None if np.isnan(fresh[j]) else float(fresh[j]),
                        "kept": bool(kept[j]),
                        "drop_reason": reasons[j],
                    }
                )
                if kept[j]:
                    sha.append(smp["sha256"])
                    ph.append(smp["phash"])
                j += 1
            writer.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
        if m == 0:
            writer.write_table(MANIFEST_SCHEMA.empty_table())

    if pickle_path is not None:
        written = write_pickled_list(pickle_path, iter_kept_records(manifest_path, samples_path, config.batch_rows))
        assert written == int(kept.sum()), (written, int(kept.sum()))

    crawl_counts: dict[str, int] = {}
    for s in status:
        crawl_counts[s] = crawl_counts.get(s, 0) + 1
    dropped: dict[str, int] = {}
    for r in reasons:
        if r is not None:
            dropped[r] = dropped.get(r, 0) + 1
    agreement = None
    if scored.any():
        vila_target = config.vila_target if config.vila_target is not None else m
        meta_pass = np.arange(m) < vila_target
        agreement = float((meta_pass[scored] == passing[scored]).mean())
    exact, near = duplicate_rates(sha, ph)
    return RescoreSummary(
        selected=m,
        crawl_counts=dict(sorted(crawl_counts.items())),
        scored=int(scored.sum()),
        below_threshold=int((scored & ~passing).sum()),
        beyond_target=int(beyond.sum()),
        kept=int(kept.sum()),
        dropped=dict(sorted(dropped.items())),
        threshold=config.min_fresh_score,
        spearman_vs_metadata_sum=spearman(meta_sum[scored], fresh[scored]),
        spearman_vs_metadata_vitb32=spearman(meta_b32[scored], fresh[scored]),
        pass_agreement=agreement,
        exact_duplicate_rate=exact,
        near_duplicate_rate=near,
        fresh_scores=[float(x) for x in fresh[scored]],
    )


# -------------------------------------------------------------------------------------------- charts


def histogram(values: Iterable[float], lo: float, hi: float, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(list(values), dtype=np.float64)
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    return counts, edges


def histogram_png(values: Iterable[float], threshold: float, lo: float = -0.2, hi: float = 1.0, bins: int = 24) -> bytes:
    """A small bar chart of fresh scores with the threshold as a red line (PNG bytes, a few KB)."""
    from PIL import Image, ImageDraw

    counts, _ = histogram(values, lo, hi, bins)
    w, h, pad = 360, 140, 18
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    top = max(int(counts.max()), 1) if len(counts) else 1
    bw = (w - 2 * pad) / bins
    for i, c in enumerate(counts):
        x0 = pad + i * bw
        y0 = h - pad - (h - 2 * pad) * c / top
        d.rectangle((x0 + 1, y0, x0 + bw - 1, h - pad), fill=(70, 110, 180))
    tx = pad + (w - 2 * pad) * (min(max(threshold, lo), hi) - lo) / (hi - lo)
    d.line((tx, pad / 2, tx, h - pad), fill=(200, 30, 30), width=2)
    d.line((pad, h - pad, w - pad, h - pad), fill=(0, 0, 0))
    d.text((pad, h - pad + 3), f"{lo:g}", fill=(0, 0, 0))
    d.text((w - pad - 12, h - pad + 3), f"{hi:g}", fill=(0, 0, 0))
    d.text((tx + 3, 2), f"threshold {threshold:g}", fill=(200, 30, 30))
    d.text((pad, 2), f"max bin {top}", fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def histogram_markdown(values: Iterable[float], threshold: float, lo: float = -0.2, hi: float = 1.0, bins: int = 12) -> str:
    """The same distribution as a Markdown table with text bars (readable in the Dagster UI and in logs)."""
    counts, edges = histogram(values, lo, hi, bins)
    top = max(int(counts.max()), 1) if len(counts) else 1
    lines = ["| fresh score | pairs | |", "|---|---:|---|"]
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        mark = " ← threshold" if a <= threshold < b else ""
        lines.append(f"| {a:.2f}–{b:.2f} | {int(c)} | {'█' * round(20 * c / top)}{mark} |")
    return "\n".join(lines)
