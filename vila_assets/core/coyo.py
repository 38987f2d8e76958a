"""COYO-700M top-20 % ("coyo_25m"): the source contract and VILA's metadata selection, Dagster-free.

VILA's ``coyo_downloader.py`` keeps, per parquet shard, the rows whose
``clip_similarity_vitb32 + clip_similarity_vitl14 > 0.6`` and then the top ``int(0.2 * n)`` of them by that
sum. We keep that rule and fix its two flaws: ties at the cut break by ``id`` (VILA's sort is unstable, so
reruns differed) and a shard where fewer than 20 % pass yields all passing rows plus a reported shortfall
(VILA's ``assert`` crashed the shard).

Memory stays bounded on a real ~5.8M-row shard (measured in ``bench/coyo_select_rss.py``):

1. one streaming aggregate pass counts rows and invalid rows (null id, missing or out-of-range scores);
2. one streaming pass collects only ``(id, score)`` of the rows above the gate and ranks them in numpy
   (16 bytes per passing row);
3. the selected rows are written **in rank order** bucket by bucket: each bucket is one streaming pass that
   filters the shard by the bucket's ids, so at most ``bucket_rows`` full rows are ever held.
   (A streaming ``sort`` or ``top_k`` over whole rows held ~900 MB on a 5M-row file; ``with_row_index`` in a
   streaming query also stops it from streaming, hence the id filter.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path

REPO_ID = "kakaobrain/coyo-700m"
N_SHARDS = 128
SHARD_KEYS: tuple[str, ...] = tuple(f"{i:05d}" for i in range(N_SHARDS))
_SHARD_UUID = "17da4908-939c-46e5-91d0-15f256041956"

# VILA's constants (coyo_downloader.py).
VILA_MIN_SCORE = 0.6
VILA_FRACTION = 0.2

SCORE_COLUMNS = ("clip_similarity_vitb32", "clip_similarity_vitl14")

# The shard schema as published (int32/float32 in the real files). Validation accepts any width of the
# same kind, so a re-export as int64/float64 still reads; a string where a number belongs does not.
COYO_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_phash", pa.string()),
        ("text_length", pa.int32()),
        ("word_count", pa.int32()),
        ("num_tokens_bert", pa.int32()),
        ("num_tokens_gpt", pa.int32()),
        ("num_faces", pa.int32()),
        ("clip_similarity_vitb32", pa.float32()),
        ("clip_similarity_vitl14", pa.float32()),
        ("nsfw_score_opennsfw2", pa.float32()),
        ("nsfw_score_gantman", pa.float32()),
        ("watermark_score", pa.float32()),
        ("aesthetic_score_laion_v2", pa.float32()),
    ]
)

# The selection file: one row per selected shard row, in rank order. ``key``/``caption`` are the column
# names the crawler reads; ``text`` stays in the per-shard pickle as VILA names it.
SELECTION_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("id", pa.int64(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("clip_sim", pa.float64(), nullable=False),
        pa.field("clip_similarity_vitb32", pa.float64(), nullable=False),
    ]
)


def shard_filename(key: str) -> str:
    """The file of shard ``key`` ("00000".."00127") in the hub repo."""
    if key not in SHARD_KEYS:
        raise ValueError(f"unknown COYO shard {key!r}; expected 00000..{SHARD_KEYS[-1]}")
    return f"data/part-{key}-{_SHARD_UUID}-c000.snappy.parquet"


# --------------------------------------------------------------------------------------------- schema


class CoyoSchemaError(ValueError):
    """A shard parquet that does not match the COYO schema; the message names the file and columns."""


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    return str(t)


@dataclass(frozen=True)
class ShardSchemaReport:
    rows: int
    row_groups: int
    columns: list[str]
    extra_columns: list[str]


def validate_shard_schema(path: str | os.PathLike[str], name: str | None = None) -> ShardSchemaReport:
    """Check a shard's footer against :data:`COYO_SCHEMA`; raise :class:`CoyoSchemaError` listing every problem.

    ``name`` is how the file is called in messages (the hub path); defaults to ``path``.
    """
    where = name or str(path)
    try:
        meta = pq.ParquetFile(path).metadata
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise CoyoSchemaError(f"{where}: not a readable parquet file ({exc})") from None
    have = {f.name: f.type for f in schema}
    problems = []
    for expected in COYO_SCHEMA:
        if expected.name not in have:
            problems.append(f"column {expected.name!r} is missing")
        elif _kind(have[expected.name]) != _kind(expected.type):
            problems.append(
                f"column {expected.name!r} has type {have[expected.name]}, expected {_kind(expected.type)}"
                f" (as {expected.type})"
            )
    if problems:
        raise CoyoSchemaError(f"{where}: not a COYO shard: " + "; ".join(problems))
    extra = sorted(set(have) - set(COYO_SCHEMA.names))
    return ShardSchemaReport(meta.num_rows, meta.num_row_groups, list(have), extra)


# ------------------------------------------------------------------------------------------ selection


@dataclass(frozen=True)
class SelectionConfig:
    fraction: float = VILA_FRACTION  # keep the top int(fraction * n) rows of the shard
    min_score: float = VILA_MIN_SCORE  # gate: vitb32 + vitl14 must be strictly above it
    oversample: float = 1.0  # > 1 preselects more rows so the CLIP re-score can rank them down to the target
    bucket_rows: int = 50_000  # full rows held at once while writing the selection in rank order

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {self.oversample}")
        if self.bucket_rows < 1:
            raise ValueError("bucket_rows must be >= 1")

    def target(self, n: int) -> int:
        """VILA's ``int(n * 0.2)``: how many rows the shard contributes."""
        return int(n * self.fraction)

    def wanted(self, n: int) -> int:
        """How many rows to preselect (the target, or more with ``oversample``)."""
        return self.target(n) if self.oversample == 1 else min(n, int(n * self.fraction * self.oversample))


@dataclass
class SelectionSummary:
    rows: int
    invalid: dict[str, int]  # reason -> rows that cannot be ranked (never selected)
    passing: int  # valid rows above the gate
    target: int  # int(fraction * rows)
    wanted: int  # target, or more with oversample
    selected: int
    cut: float | None  # lowest selected score
    ties_at_cut: int  # passing rows whose score equals the cut
    ties_kept: int  # of those, how many the id tie-break kept
    passes: int  # streaming passes over the shard
    max_rows_held: int  # most full rows held in memory at once
    min_score: float = VILA_MIN_SCORE
    fraction: float = VILA_FRACTION
    oversample: float = 1.0
    warnings: list[str] = field(default_factory=list)

    @property
    def shortfall(self) -> int:
        """Rows short of the target because too few passed the gate (VILA would have crashed)."""
        return max(0, self.target - self.selected)

    @property
    def pass_rate(self) -> float:
        return self.passing / self.rows if self.rows else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "shortfall": self.shortfall, "pass_rate": self.pass_rate}


def _score_expr() -> pl.Expr:
    b, l = (pl.col(c).cast(pl.Float64) for c in SCORE_COLUMNS)
    return b + l


def _validity_exprs() -> dict[str, pl.Expr]:
    """Why a row cannot be ranked: polars compares NaN as larger than every number, so NaN must go first."""
    b, l = (pl.col(c).cast(pl.Float64) for c in SCORE_COLUMNS)
    has_id = pl.col("id").is_not_null()
    has_scores = (b.is_not_null() & l.is_not_null() & b.is_not_nan() & l.is_not_nan()).fill_null(False)
    in_range = ((b.abs() <= 1) & (l.abs() <= 1)).fill_null(False)
    return {
        "null id": ~has_id,
        "missing clip score": has_id & ~has_scores,
        "clip score out of [-1, 1]": has_id & has_scores & ~in_range,
        "_valid": has_id & has_scores & in_range,
    }


def _candidates(min_score: float) -> pl.Expr:
    return _validity_exprs()["_valid"] & (_score_expr() > min_score)


def select_top(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    config: SelectionConfig = SelectionConfig(),
    name: str | None = None,
) -> SelectionSummary:
    """Write the selection of shard ``path`` to ``out_path`` (parquet, :data:`SELECTION_SCHEMA`, rank order).

    Order: score descending, then ``id`` ascending; that total order makes the selection and its order a
    pure function of the shard. Ids must be unique among passing rows (COYO ids are); duplicates raise.
    """
    where = name or str(path)
    lf = pl.scan_parquet(path)
    passing_expr = _candidates(config.min_score)
    n, passing, invalid = _count_rows(lf, passing_expr)
    wanted = config.wanted(n)
    floor = _floor_for_top(lf, passing_expr, wanted)
    cand = (
        lf.filter(passing_expr & (_score_expr() >= floor))
        .select(pl.col("id").cast(pl.Int64), _score_expr().alias("clip_sim"))
        .collect(engine="streaming")
    )
    sel_ids, sel_scores, ties_at_cut = _rank(cand["id"].to_numpy(), cand["clip_sim"].to_numpy(), wanted)
    del cand
    _raise_on_duplicate_ids(sel_ids, where)
    cut = float(sel_scores[-1]) if len(sel_scores) else None
    summary = SelectionSummary(
        rows=n, invalid=invalid, passing=passing, target=config.target(n), wanted=wanted, selected=len(sel_ids),
        cut=cut, ties_at_cut=ties_at_cut, ties_kept=int((sel_scores == cut).sum()) if cut is not None else 0,
        passes=3, max_rows_held=0, min_score=config.min_score, fraction=config.fraction,
        oversample=config.oversample,
    )
    summary.warnings += _selection_warnings(summary, where)
    _write_in_rank_order(lf, passing_expr, sel_ids, sel_scores, out_path, config.bucket_rows, summary, where)
    return summary


def _count_rows(lf: pl.LazyFrame, passing_expr: pl.Expr) -> tuple[int, int, dict[str, int]]:
    """Pass 1: (rows, rows above the gate, {reason: rows that cannot be ranked})."""
    reasons = _validity_exprs()
    counts = lf.select(
        pl.len().alias("rows"),
        *(e.sum().alias(r) for r, e in reasons.items() if not r.startswith("_")),
        passing_expr.sum().alias("passing"),
    ).collect(engine="streaming")
    row = counts.row(0, named=True)
    n, passing = int(row.pop("rows")), int(row.pop("passing") or 0)
    return n, passing, {r: int(v or 0) for r, v in row.items() if v}


def _selection_warnings(summary: SelectionSummary, where: str) -> list[str]:
    out = []
    if summary.selected < summary.wanted:
        out.append(
            f"{where}: only {summary.passing} of {summary.rows} rows ({summary.pass_rate:.1%}) pass clip_sim > "
            f"{summary.min_score}; selected all of them, {summary.wanted - summary.selected} short of {summary.wanted}"
        )
    out += [f"{where}: {k} row(s) not ranked: {reason}" for reason, k in summary.invalid.items()]
    return out


def _write_in_rank_order(lf: pl.LazyFrame, passing_expr: pl.Expr, sel_ids: np.ndarray, sel_scores: np.ndarray,
                         out_path: str | os.PathLike[str], bucket_rows: int, summary: SelectionSummary,
                         where: str) -> None:
    """The last passes: full rows, one rank bucket of ``bucket_rows`` at a time (counted in ``summary``)."""
    with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, SELECTION_SCHEMA, compression="zstd") as writer:
        for lo in range(0, len(sel_ids), bucket_rows):
            table = _bucket_table(lf, passing_expr, sel_ids[lo : lo + bucket_rows],
                                  sel_scores[lo : lo + bucket_rows], lo, where)
            summary.passes += 1
            summary.max_rows_held = max(summary.max_rows_held, table.num_rows)
            writer.write_table(table)
        if not len(sel_ids):
            writer.write_table(SELECTION_SCHEMA.empty_table())


# Histogram resolution for the pre-cut: sums live in [-2, 2]; 1/4096 bins keep the top bin's excess small.
_BINS_PER_UNIT = 4096


def _floor_for_top(lf: pl.LazyFrame, passing_expr: pl.Expr, wanted: int) -> float:
    """A score floor that every one of the ``wanted`` best passing rows reaches, from a streaming histogram.

    Collecting only rows at or above it keeps the candidate arrays near ``wanted`` instead of every
    passing row (a third more on real shards). Exactness is untouched: the floor is a bin's lower edge.
    """
    if wanted <= 0:
        return float("inf")
    hist = (
        lf.filter(passing_expr)
        .select((_score_expr() * _BINS_PER_UNIT).floor().cast(pl.Int64).alias("bin"))
        .group_by("bin")
        .len()
        .collect(engine="streaming")
        .sort("bin", descending=True)
    )
    reached = np.cumsum(hist["len"].to_numpy()) >= wanted
    if not reached.any():
        return -float("inf")  # fewer passing rows than wanted: take them all
    return float(hist["bin"][int(np.argmax(reached))]) / _BINS_PER_UNIT


def _rank(ids: np.ndarray, scores: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``wanted`` best (id, score) by score desc, id asc, and how many candidates tie with the last one.

    Only copies of the selected slice survive, so the candidate arrays can be freed before the row passes.
    """
    order = np.lexsort((ids, -scores))[:wanted]
    sel_ids, sel_scores = ids[order], scores[order]
    ties = int((scores == sel_scores[-1]).sum()) if len(sel_scores) else 0
    return sel_ids, sel_scores, ties


def _raise_on_duplicate_ids(ids: np.ndarray, where: str) -> None:
    s = np.sort(ids)
    dup = np.unique(s[1:][s[1:] == s[:-1]])
    if len(dup):
        shown = ", ".join(str(int(i)) for i in dup[:5])
        raise ValueError(
            f"{where}: {len(dup)} id(s) appear on more than one row above the gate (e.g. {shown}); "
            "COYO ids are unique, so the shard is corrupt"
        )


def _bucket_table(
    lf: pl.LazyFrame, passing_expr: pl.Expr, ids: np.ndarray, scores: np.ndarray, first_rank: int, where: str
) -> pa.Table:
    """The full rows of one rank bucket, in rank order (one streaming pass filtered by id)."""
    rows = (
        lf.filter(passing_expr & pl.col("id").cast(pl.Int64).is_in(pl.Series(ids, dtype=pl.Int64).implode()))
        .select(
            pl.col("id").cast(pl.Int64),
            pl.col("url").cast(pl.String),
            pl.col("text").cast(pl.String).alias("caption"),
            _score_expr().alias("clip_sim"),
            pl.col("clip_similarity_vitb32").cast(pl.Float64),
        )
        .collect(engine="streaming")
    )
    if rows.height > len(ids):
        dup = rows.filter(pl.col("id").is_duplicated())["id"].unique().sort().head(5).to_list()
        raise ValueError(
            f"{where}: id(s) {dup} appear on more than one row above the gate; COYO ids are unique, so the shard is corrupt"
        )
    if rows.height != len(ids):
        raise RuntimeError(
            f"{where}: expected {len(ids)} rows for rank bucket at {first_rank}, found {rows.height}; "
            "did the file change during selection?"
        )
    # Rows arrive in file order; place each at its rank (ids are unique, so the mapping is exact).
    by_id = np.argsort(ids, kind="stable")
    got = rows["id"].to_numpy()
    position = by_id[np.searchsorted(ids, got, sorter=by_id)]
    rows = rows.with_columns(
        pl.Series("rank", position + first_rank, dtype=pl.Int64), pl.col("id").cast(pl.String).alias("key")
    ).sort("rank")
    if not np.array_equal(rows["clip_sim"].to_numpy(), scores):
        raise RuntimeError(f"{where}: scores changed between passes (rank bucket at {first_rank})")
    return rows.select(SELECTION_SCHEMA.names).to_arrow().cast(SELECTION_SCHEMA)


def verify_selection(
    path: str | os.PathLike[str], selection_path: str | os.PathLike[str], summary: SelectionSummary
) -> list[str]:
    """Independent re-check of a selection against its shard; an empty list means it is right.

    Every selected row is above the gate; ranks run 0..m-1 in (score desc, id asc) order; the count is the
    wanted count or, on a shortfall, every passing row; and no passing row outside the selection beats the
    last selected one (counted by a fresh streaming pass, not taken from the selection code).
    """
    problems: list[str] = []
    sel = pl.read_parquet(selection_path, columns=["rank", "id", "clip_sim"])
    m = sel.height
    if m != summary.selected:
        problems.append(f"selection has {m} rows, summary says {summary.selected}")
    if not sel["rank"].equals(pl.Series("rank", np.arange(m), dtype=pl.Int64)):
        problems.append("ranks are not 0..m-1 in file order")
    if m and (sel["clip_sim"] <= summary.min_score).any():
        problems.append(f"{int((sel['clip_sim'] <= summary.min_score).sum())} selected row(s) at or below the gate")
    if m > 1:
        s, i = sel["clip_sim"].to_numpy(), sel["id"].to_numpy()
        out_of_order = (s[1:] > s[:-1]) | ((s[1:] == s[:-1]) & (i[1:] <= i[:-1]))
        if out_of_order.any():
            problems.append(f"rank order broken at rank {int(np.argmax(out_of_order)) + 1}")
    expected = min(summary.wanted, summary.passing)
    if m != expected:
        problems.append(f"selected {m} rows, expected min(wanted {summary.wanted}, passing {summary.passing})")
    if m:
        cut, last_id = float(sel["clip_sim"][-1]), int(sel["id"][-1])
        lf = pl.scan_parquet(path)
        s = _score_expr()
        better = (
            lf.filter(_candidates(summary.min_score) & ((s > cut) | ((s == cut) & (pl.col("id") <= last_id))))
            .select(pl.len())
            .collect(engine="streaming")
            .item()
        )
        if better != m:
            problems.append(f"{better} rows of the shard rank at or above the cut, but {m} were selected")
    return problems


def iter_selection(selection_path: str | os.PathLike[str], batch_rows: int = 4096) -> Iterator[dict]:
    """Selection rows in rank order, streamed."""
    with pq.ParquetFile(selection_path) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()


def selection_rows(selection_path: str | os.PathLike[str]) -> int:
    return pq.ParquetFile(selection_path).metadata.num_rows


# --------------------------------------------------------------------------------------- crawl batches

_CRAWL_INPUT_SCHEMA = pa.schema([("key", pa.string()), ("url", pa.string()), ("caption", pa.string())])


def write_crawl_input(selections: dict[str, Path], path: str | os.PathLike[str]) -> dict[str, int]:
    """One crawler input for several shards' selections, shard blocks in the given order, keys
    ``"<shard>/<id>"``. Streams one selection at a time; returns rows per shard."""
    counts: dict[str, int] = {}
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, _CRAWL_INPUT_SCHEMA) as writer:
        for shard, sel_path in selections.items():
            sel = pq.read_table(sel_path, columns=["key", "url", "caption"]).cast(_CRAWL_INPUT_SCHEMA)
            counts[shard] = sel.num_rows
            keys = pa.array([f"{shard}/{k}" for k in sel.column("key").to_pylist()], pa.string())
            writer.write_table(sel.set_column(0, "key", keys))
    return counts


def split_crawl_samples(batch_samples: str | os.PathLike[str], counts: dict[str, int], out_paths: dict[str, Path],
                        batch_rows: int = 512) -> None:
    """Cut a batched crawl's samples file back into one file per shard (keys unprefixed).

    The crawler keeps input order, so each shard is one contiguous block; ``batch_rows`` rows are read at a
    time and each shard's file is written as its rows arrive.
    """
    from vila_assets.core.crawl.writer import SAMPLES_SCHEMA, open_writer

    total = pq.ParquetFile(batch_samples).metadata.num_rows
    if total != sum(counts.values()):
        raise ValueError(f"{batch_samples}: {total} rows, but the shards' selections hold {sum(counts.values())}")
    batches = pq.ParquetFile(batch_samples).iter_batches(batch_size=batch_rows)
    pending = SAMPLES_SCHEMA.empty_table()
    for shard, need in counts.items():
        prefix = f"{shard}/"
        with atomic_path(out_paths[shard]) as tmp, open_writer(tmp, SAMPLES_SCHEMA) as writer:
            while need:
                if pending.num_rows == 0:
                    pending = pa.Table.from_batches([next(batches)]).cast(SAMPLES_SCHEMA)
                take, pending = pending.slice(0, need), pending.slice(min(need, pending.num_rows))
                need -= take.num_rows
                keys = take.column("key").to_pylist()
                if not all(k.startswith(prefix) for k in keys):
                    raise ValueError(f"{batch_samples}: rows of another shard inside shard {shard}'s block")
                writer.write_table(take.set_column(0, SAMPLES_SCHEMA.field("key"), pa.array([k[len(prefix):] for k in keys], pa.string())))
            if counts[shard] == 0:
                writer.write_table(SAMPLES_SCHEMA.empty_table())
