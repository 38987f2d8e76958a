"""COYO re-score: CLIP scores of what was actually downloaded, the keep/drop decision per pair, and the
per-shard outputs (per-sample Parquet manifest + VILA's per-shard ``coyo`` pickle). Dagster-free.

The 2021 metadata scores describe the images Kakao Brain crawled; today many of those URLs serve a
placeholder or a different picture. Under the ``curated`` policy pairs whose fresh score falls below a
threshold are dropped, and the agreement between metadata and fresh scores is reported. Under ``vila``
nothing is scored (``coyo_downloader.py`` never ran CLIP): every downloaded pair is kept.

Everything streams in rank order: the selection, the crawler's samples file and the manifest all
hold one row per selected row in the same order, so they are read in lockstep, ``batch_rows`` at a time.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path
from vila_assets.core.coyo import iter_parquet_batches, parquet_rows
from vila_assets.core.vila_format import jpeg_to_base64, write_pickled_list

ScoreFn = Callable[[list[bytes], list[str]], np.ndarray]

# Why a selected row is not in the output; None in the manifest means kept.
DROP_CRAWL = "crawl: {status}"
DROP_NO_TEXT = "missing text"
DROP_NO_IMAGE = "downloaded, but no image bytes"
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
    min_fresh_score: float | None  # None: no re-score (vila), every downloaded pair is kept
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
    threshold: float | None
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
    for _, batch in iter_parquet_batches(path, columns, batch_rows):
        yield from batch.to_pylist()


def iter_lockstep(
    left: str | os.PathLike[str],
    right: str | os.PathLike[str],
    right_columns: list[str],
    batch_rows: int = 256,
    left_columns: list[str] | None = None,
) -> Iterator[list[tuple[dict, dict]]]:
    """Batches of ``(left row, right row)``; ``left`` has ``id``, ``right`` the crawler's ``key`` = str(id)."""
    n_left, n_right = (parquet_rows(p) for p in (left, right))
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
    score_fn: ScoreFn | None,
    config: RescoreConfig,
    manifest_path: str | os.PathLike[str],
    pickle_path: str | os.PathLike[str] | None = None,
) -> RescoreSummary:
    """Score every downloaded pair, decide what to keep, write the manifest (and the shard pickle).

    Two lockstep passes over selection + samples: the first scores (holding one float per row), the second
    writes the manifest. Then the pickle streams from manifest + samples. Without a threshold
    (``config.min_fresh_score`` None, the vila policy) nothing is scored and every downloaded pair is kept.
    """
    if (score_fn is None) != (config.min_fresh_score is None):
        raise ValueError("a scorer and a threshold go together: give both (curated) or neither (vila)")
    scores = score_pass(selection_path, samples_path, score_fn, config.batch_rows)
    decision = decide(scores, config)
    kept_sha, kept_phash = write_manifest(selection_path, samples_path, scores, decision, manifest_path,
                                          config.batch_rows)
    if pickle_path is not None:
        written = write_pickled_list(pickle_path, iter_kept_records(manifest_path, samples_path, config.batch_rows))
        if written != decision.kept_count:
            raise LockstepError(f"{pickle_path}: wrote {written} records, the manifest keeps {decision.kept_count}")
    return summarize(scores, decision, config, kept_sha, kept_phash)


@dataclass
class PairScores:
    """Pass 1's result, one entry per selected row in rank order."""

    fresh: np.ndarray  # float32 fresh score; NaN where not scored
    meta_sum: np.ndarray  # metadata vitb32 + vitl14
    meta_b32: np.ndarray
    status: list[str]  # crawl status
    has_text: np.ndarray
    has_image: np.ndarray

    @property
    def selected(self) -> int:
        return len(self.status)

    @property
    def ok(self) -> np.ndarray:
        return np.array([s == "ok" for s in self.status], dtype=bool)

    @property
    def scored(self) -> np.ndarray:
        return ~np.isnan(self.fresh)


def score_pass(selection_path: str | os.PathLike[str], samples_path: str | os.PathLike[str],
               score_fn: ScoreFn | None, batch_rows: int = 256) -> PairScores:
    """Pass 1: the fresh score of every downloaded pair with a caption, ``batch_rows`` pairs at a time
    (``score_fn`` None: only the crawl outcome is read)."""
    m = parquet_rows(selection_path)
    out = PairScores(np.full(m, np.nan, dtype=np.float32), np.zeros(m, dtype=np.float64),
                     np.zeros(m, dtype=np.float64), [], np.zeros(m, dtype=bool), np.zeros(m, dtype=bool))
    i = 0
    for batch in iter_lockstep(selection_path, samples_path, ["key", "status", "image"], batch_rows):
        idx, images, texts = [], [], []
        for sel, smp in batch:
            out.status.append(smp["status"])
            out.meta_sum[i], out.meta_b32[i] = sel["clip_sim"], sel["clip_similarity_vitb32"]
            out.has_text[i] = bool(sel["caption"] and sel["caption"].strip())
            out.has_image[i] = smp["status"] == "ok" and bool(smp["image"])
            if score_fn is not None and out.has_image[i] and out.has_text[i]:
                idx.append(i)
                images.append(smp["image"])
                texts.append(sel["caption"])
            i += 1
        if idx:
            scores = np.asarray(score_fn(images, texts), dtype=np.float32)
            if scores.shape != (len(idx),):
                raise ValueError(f"scorer returned shape {scores.shape} for {len(idx)} pairs")
            out.fresh[idx] = scores
    return out


@dataclass
class KeepDecision:
    passing: np.ndarray  # scored and at or above the threshold
    beyond: np.ndarray  # passing, but past the target after re-ranking by fresh score
    kept: np.ndarray
    reasons: list[str | None]  # None: kept

    @property
    def kept_count(self) -> int:
        return int(self.kept.sum())


def decide(scores: PairScores, config: RescoreConfig) -> KeepDecision:
    """Keep/drop per row, with the first reason that applies to a dropped one. Without a threshold (vila)
    every downloaded pair is kept, whatever its caption, as VILA's downloader keeps it."""
    if config.min_fresh_score is None:
        kept = scores.has_image.copy()
        reasons = [None if k else DROP_NO_IMAGE if st == "ok" else DROP_CRAWL.format(status=st)
                   for k, st in zip(kept, scores.status)]
        return KeepDecision(kept.copy(), np.zeros(scores.selected, dtype=bool), kept, reasons)
    fresh, scored, ok = scores.fresh, scores.scored, scores.ok
    passing = scored & (fresh >= config.min_fresh_score)
    beyond = np.zeros(scores.selected, dtype=bool)
    if config.target is not None and passing.sum() > config.target:
        cand = np.flatnonzero(passing)
        order = cand[np.lexsort((cand, -fresh[cand]))]  # fresh score desc, then selection rank
        beyond[order[config.target :]] = True
    kept = passing & ~beyond
    reasons: list[str | None] = []
    for j in range(scores.selected):
        if kept[j]:
            reasons.append(None)
        elif not ok[j]:
            reasons.append(DROP_CRAWL.format(status=scores.status[j]))
        elif not scores.has_text[j]:
            reasons.append(DROP_NO_TEXT)
        elif not scored[j]:
            reasons.append(DROP_UNSCORABLE)
        elif beyond[j]:
            reasons.append(DROP_BEYOND_TARGET)
        else:
            reasons.append(DROP_BELOW)
    return KeepDecision(passing, beyond, kept, reasons)


_MANIFEST_SAMPLE_COLUMNS = ["key", "status", "error", "http_status", "width", "height", "sha256", "phash"]


def _manifest_row(sel: dict, smp: dict, fresh: float, kept: bool, reason: str | None) -> dict:
    return {
        "rank": sel["rank"], "id": sel["id"], "url": sel["url"], "text": sel["caption"],
        "clip_sim": sel["clip_sim"], "clip_similarity_vitb32": sel["clip_similarity_vitb32"],
        "crawl_status": smp["status"], "crawl_error": smp["error"], "http_status": smp["http_status"],
        "width": smp["width"], "height": smp["height"], "sha256": smp["sha256"], "phash": smp["phash"],
        "fresh_clip_sim": None if np.isnan(fresh) else float(fresh), "kept": kept, "drop_reason": reason,
    }


def write_manifest(selection_path: str | os.PathLike[str], samples_path: str | os.PathLike[str],
                   scores: PairScores, decision: KeepDecision, manifest_path: str | os.PathLike[str],
                   batch_rows: int = 256) -> tuple[list[str | None], list[str | None]]:
    """Pass 2: one manifest row per selected row; returns the kept images' (sha256s, pHashes)."""
    sha, ph = [], []
    with atomic_path(manifest_path) as tmp, pq.ParquetWriter(tmp, MANIFEST_SCHEMA, compression="zstd") as writer:
        j = 0
        for batch in iter_lockstep(selection_path, samples_path, _MANIFEST_SAMPLE_COLUMNS, batch_rows):
            rows = []
            for sel, smp in batch:
                kept = bool(decision.kept[j])
                rows.append(_manifest_row(sel, smp, scores.fresh[j], kept, decision.reasons[j]))
                if kept:
                    sha.append(smp["sha256"])
                    ph.append(smp["phash"])
                j += 1
            writer.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
        if scores.selected == 0:
            writer.write_table(MANIFEST_SCHEMA.empty_table())
    return sha, ph


def summarize(scores: PairScores, decision: KeepDecision, config: RescoreConfig,
              kept_sha: list[str | None], kept_phash: list[str | None]) -> RescoreSummary:
    """The shard's figures: counts, drop reasons, agreement with the metadata scores, duplicate rates."""
    m, scored, fresh = scores.selected, scores.scored, scores.fresh
    agreement = None
    if scored.any():
        vila_target = config.vila_target if config.vila_target is not None else m
        meta_pass = np.arange(m) < vila_target
        agreement = float((meta_pass[scored] == decision.passing[scored]).mean())
    exact, near = duplicate_rates(kept_sha, kept_phash)
    return RescoreSummary(
        selected=m,
        crawl_counts=dict(sorted(Counter(scores.status).items())),
        scored=int(scored.sum()),
        below_threshold=int((scored & ~decision.passing).sum()),
        beyond_target=int(decision.beyond.sum()),
        kept=decision.kept_count,
        dropped=dict(sorted(Counter(r for r in decision.reasons if r is not None).items())),
        threshold=config.min_fresh_score,
        spearman_vs_metadata_sum=spearman(scores.meta_sum[scored], fresh[scored]),
        spearman_vs_metadata_vitb32=spearman(scores.meta_b32[scored], fresh[scored]),
        pass_agreement=agreement,
        exact_duplicate_rate=exact,
        near_duplicate_rate=near,
        fresh_scores=[float(x) for x in fresh[scored]],
    )
