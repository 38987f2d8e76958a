"""COYO-700M top-20 % ("coyo_25m"): the source contract and VILA's metadata selection, Dagster-free.

VILA's ``coyo_downloader.py`` keeps, per parquet shard, the rows whose
``clip_similarity_vitb32 + clip_similarity_vitl14 > 0.6`` and then the top ``int(0.2 * n)`` of them by that
sum. Two data policies (``core.policy``) read that rule differently, as :data:`POLICY_DIFFERENCES` says:

- ``vila``: VILA's arithmetic exactly (the sum in the columns' own float32, the gate compared in float32),
  ties in file order (VILA's unstable sort leaves them undefined; a stable sort keeps file order), every row
  kept even where an id repeats;
- ``curated``: the sum in float64, rows with unusable scores (NaN, outside [-1, 1]) never ranked, ties by
  ``id``, one row per id.

Under both, a shard where too few rows pass yields every passing row and a reported shortfall (VILA's
``assert`` stopped the shard), and any oddity (repeated or null ids, broken scores) is counted and named,
never a failure of the whole shard.

Memory stays bounded on a real ~5.8M-row shard (measured in ``bench/coyo_select_rss.py``):

1. a streaming pass over ``id`` and the two scores counts rows, finds repeated ids and builds a histogram
   of the scores above the gate;
2. a second such pass keeps ``(row, id, score)`` of the rows at or above the histogram's floor under the
   wanted count (24 bytes a row, about the wanted count) and ranks them in numpy;
3. a third pass drops each selected full row into a scratch file per rank bucket; the buckets are then read
   back one at a time, put in rank order and written out, so at most ``bucket_rows`` selected rows (and one
   read batch of the shard) are ever held.

Both passes read one row group at a time (pyarrow's reader otherwise reads ahead across the whole file).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path
from vila_assets.core.policy import Difference, Policy, as_policy

REPO_ID = "kakaobrain/coyo-700m"
N_SHARDS = 128
SHARD_KEYS: tuple[str, ...] = tuple(f"{i:05d}" for i in range(N_SHARDS))
_SHARD_UUID = "17da4908-939c-46e5-91d0-15f256041956"

# VILA's constants (coyo_downloader.py).
VILA_MIN_SCORE = 0.6
VILA_FRACTION = 0.2

SCORE_COLUMNS = ("clip_similarity_vitb32", "clip_similarity_vitl14")

POLICY_DIFFERENCES = (
    Difference(
        "COYO", "shard file",
        "`sorted(f for f in os.listdir(data) if f.endswith('.parquet'))[SHARD]`",
        "same (the file numbered SHARD, which is that one whenever all 128 files are present; a missing file "
        "is an error naming it instead of a shifted shard)",
        "same as `vila`"),
    Difference(
        "COYO", "selection",
        "vitb32 + vitl14 summed in float32, `> 0.6` in float32, top `int(0.2 n)` by an unstable descending "
        "sort (order among equal scores undefined)",
        "same arithmetic; equal scores keep file order (a stable sort)",
        "sum in float64; NaN or out-of-range scores never ranked; equal scores by `id`"),
    Difference(
        "COYO", "shard where <= 20 % pass the gate",
        "`assert kept/n > 0.2` stops the shard (no output)",
        "every passing row selected; the shard is reported (warning check), not stopped",
        "same as `vila`"),
    Difference(
        "COYO", "repeated or null ids",
        "every row kept (pandas reads the ids of a shard with a null id as floats)",
        "repeated ids kept and reported; rows with a null id reported and left out",
        "one row per id (the best-ranked), repeats reported; null ids left out"),
    Difference(
        "COYO", "CLIP re-score",
        "none: every downloaded pair kept",
        "same",
        "pairs re-scored with the `clip` resource; below its `min_fresh_score` dropped"),
    Difference(
        "COYO", "record order",
        "download-completion order (not reproducible)",
        "selection rank order (reproducible); the same records",
        "selection rank order"),
    Difference(
        "COYO", "split into parts",
        "consecutive parts of exactly 12,440; the final partial part silently dropped",
        "same; the dropped count is reported",
        "parts of at most `samples_per_part`, laid out for `train_world_size` (4 samples per index) so every "
        "record is usable; the shortfall padded by repeating the first records, reported"),
)

# The shard schema as published (int64/int32/float32 in the real files). Validation accepts any width of the
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

# The selection file: one row per selected shard row, in rank order. ``row`` is the row's number in the shard
# file (ids may repeat, row numbers do not); ``key``/``caption`` are the column names the crawler reads;
# ``text`` stays in the per-shard pickle as VILA names it.
SELECTION_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("id", pa.int64(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("clip_sim", pa.float64(), nullable=False),
        pa.field("clip_similarity_vitb32", pa.float64(), nullable=False),
    ]
)


# ----------------------------------------------------------------------------------------- shard files


def shard_filename(key: str) -> str:
    """The file of shard ``key`` ("00000".."00127") in the hub repo."""
    if key not in SHARD_KEYS:
        raise ValueError(f"unknown COYO shard {key!r}; expected 00000..{SHARD_KEYS[-1]}")
    return f"data/part-{key}-{_SHARD_UUID}-c000.snappy.parquet"


# The names a shard file carries its number in: the release (part-00002-<uuid>-c000.snappy.parquet) and the
# hub's refs/convert/parquet branch (train/0002.parquet, formerly parquet-train-00002-of-00128.parquet).
_NUMBERED = (
    re.compile(r"^part-(\d{5})-.*\.parquet$"),
    re.compile(r"^(\d{4,5})\.parquet$"),
    re.compile(r"^parquet-train-(\d{5})-of-\d{5}\.parquet$"),
)


class ShardNotFound(LookupError):
    """The source holds no file for a shard; the message names the source and the file expected."""


def shard_number(name: str) -> int | None:
    """The shard number in a file name (see ``_NUMBERED``), None for other names."""
    for pattern in _NUMBERED:
        m = pattern.match(name)
        if m:
            return int(m[1])
    return None


def _shard_folder(files: list[str], where: str) -> str:
    """The one folder holding the shards: ``data`` in the release, the only parquet folder otherwise."""
    folders = sorted({str(PurePosixPath(f).parent) for f in files if f.endswith(".parquet")})
    if "data" in folders:
        return "data"
    if len(folders) == 1:
        return folders[0]
    if not folders:
        raise ShardNotFound(f"{where}: no parquet file at all (expected data/part-NNNNN-...snappy.parquet)")
    raise ShardNotFound(f"{where}: parquet files in several folders ({', '.join(folders)}); point the source "
                        "at the one holding the shards")


def resolve_shard_file(files: list[str], key: str, where: str) -> str:
    """The file of shard ``key`` among a source's ``files`` (relative POSIX paths).

    VILA reads ``sorted(f for f in os.listdir(folder) if f.endswith(".parquet"))[SHARD]`` (so ``_SUCCESS`` is
    ignored). When every name carries its shard number, the file numbered ``key`` is taken: the same file
    whenever the folder is complete, and an error naming the missing file instead of a silently shifted
    shard when it is not. Names without numbers are taken by VILA's sorted position.
    """
    index = int(shard_filename(key).split("-")[1])  # validates the key
    folder = _shard_folder(files, where)
    names = sorted(PurePosixPath(f).name for f in files
                   if f.endswith(".parquet") and str(PurePosixPath(f).parent) == folder)
    numbers = {shard_number(n): n for n in names}
    if None not in numbers:
        if index not in numbers:
            expected = shard_filename(key) if folder == "data" else f"{folder}/<file numbered {index}>"
            raise ShardNotFound(f"{where}: COYO shard {key}: no file {expected!r} "
                                f"({len(names)} parquet files in {folder}/)")
        name = numbers[index]
    elif index < len(names):
        name = names[index]
    else:
        raise ShardNotFound(f"{where}: COYO shard {key}: only {len(names)} parquet files in {folder}/")
    return name if folder == "." else f"{folder}/{name}"


# --------------------------------------------------------------------------------------------- schema


class CoyoFileError(ValueError):
    """An input file that cannot be read; the message names it."""


class CoyoSchemaError(CoyoFileError):
    """A shard that cannot be read or does not match the COYO schema; the message names the file."""


def iter_parquet_batches(path: str | os.PathLike[str], columns: list[str] | None, batch_rows: int,
                         where: str | None = None, error: type[CoyoFileError] = CoyoFileError
                         ) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(first row number, batch)`` over a parquet file; an unreadable file raises ``error`` naming it
    (``where``, default the path) and the row it stopped at (pyarrow's own message names neither)."""
    offset, pool = 0, pa.default_memory_pool()
    try:
        with pq.ParquetFile(path) as pf:
            for group in range(pf.num_row_groups):  # one row group at a time: no read-ahead of the whole file
                for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns,
                                             use_threads=False):
                    yield offset, batch
                    offset += batch.num_rows
                pool.release_unused()  # the allocator would keep the row group's pages until much later
    except (OSError, pa.ArrowException) as exc:
        raise error(f"{where or path}: not a readable parquet file (at row {offset}: {exc})") from None


def read_parquet_table(path: str | os.PathLike[str], columns: list[str] | None = None) -> pa.Table:
    """A whole (small) parquet file; an unreadable file raises :class:`CoyoFileError` naming it."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise CoyoFileError(f"{path}: not a readable parquet file ({exc})") from None


def parquet_rows(path: str | os.PathLike[str], where: str | None = None) -> int:
    """The row count in a parquet file's footer; an unreadable file raises :class:`CoyoFileError` naming it."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise CoyoFileError(f"{where or path}: not a readable parquet file ({exc})") from None


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

    ``name`` is how the file is called in messages (the source path); defaults to ``path``.
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


def iter_shard_batches(path: str | os.PathLike[str], columns: list[str], where: str,
                       batch_rows: int = 65_536) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(first row number, batch)`` over a shard's ``columns``; a read error names the file."""
    return iter_parquet_batches(path, columns, batch_rows, where, CoyoSchemaError)


# ------------------------------------------------------------------------------------------ selection


@dataclass(frozen=True)
class SelectionConfig:
    policy: Policy = Policy.curated
    fraction: float = VILA_FRACTION  # keep the top int(fraction * n) rows of the shard
    min_score: float = VILA_MIN_SCORE  # gate: vitb32 + vitl14 must be strictly above it
    oversample: float = 1.0  # > 1 preselects more rows so the CLIP re-score can rank them down (curated only)
    bucket_rows: int = 50_000  # full rows held at once while writing the selection in rank order
    batch_rows: int = 65_536  # rows read per step of a streaming pass

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", as_policy(self.policy))
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {self.oversample}")
        if self.oversample != 1 and self.policy is Policy.vila:
            raise ValueError("oversample needs the CLIP re-score, which the vila policy does not run; use 1")
        if self.bucket_rows < 1 or self.batch_rows < 1:
            raise ValueError("bucket_rows and batch_rows must be >= 1")

    def target(self, n: int) -> int:
        """VILA's ``int(n * 0.2)``: how many rows the shard contributes."""
        return int(n * self.fraction)

    def wanted(self, n: int) -> int:
        """How many rows to preselect (the target, or more with ``oversample``)."""
        return self.target(n) if self.oversample == 1 else min(n, int(n * self.fraction * self.oversample))


@dataclass
class SelectionSummary:
    rows: int
    invalid: dict[str, int]  # reason -> rows never ranked (null id; curated: unusable scores)
    passing: int  # ranked rows above the gate (repeats of an id included)
    target: int  # int(fraction * rows)
    wanted: int  # target, or more with oversample
    selected: int
    cut: float | None  # lowest selected score
    ties_at_cut: int  # ranked rows whose score equals the cut
    ties_kept: int  # of those, how many the tie-break kept
    passes: int  # streaming passes over the shard
    max_rows_held: int  # most full rows held in memory at once
    policy: str = Policy.curated.value
    min_score: float = VILA_MIN_SCORE
    fraction: float = VILA_FRACTION
    oversample: float = 1.0
    repeated_id_rows: int = 0  # rows above the gate whose id an earlier such row has
    repeated_ids: list[int] = field(default_factory=list)  # a few of those ids
    repeats_dropped: int = 0  # curated: rows left out as repeats of a better-ranked row (among those ranked)
    out_of_range_ranked: int = 0  # vila: rows with a score outside [-1, 1] ranked as VILA ranks them
    warnings: list[str] = field(default_factory=list)

    @property
    def shortfall(self) -> int:
        """Rows short of the target because too few passed the gate."""
        return max(0, self.target - self.selected)

    @property
    def pass_rate(self) -> float:
        return self.passing / self.rows if self.rows else 0.0

    @property
    def vila_assert_fails(self) -> bool:
        """VILA's ``assert kept / n > 0.2`` would stop this shard (exactly 20 % passing included)."""
        return not (self.rows and self.pass_rate > self.fraction)

    def as_dict(self) -> dict:
        return {**asdict(self), "shortfall": self.shortfall, "pass_rate": self.pass_rate,
                "vila_assert_fails": self.vila_assert_fails}


@dataclass
class _Census:
    """Pass 1's result: row counts, the repeated ids, and a histogram of the ranked scores above the gate."""

    n: int
    invalid: dict[str, int]
    out_of_range_ranked: int
    repeated_id_rows: int
    repeated_ids: list[int]
    hist: np.ndarray  # ranked rows above the gate per score bin (see _bins)

    @property
    def passing(self) -> int:
        return int(self.hist.sum())


@dataclass
class _Candidates:
    """Pass 2's result: the ranked rows at or above a score floor, in file order."""

    rows: np.ndarray  # int64 row numbers
    ids: np.ndarray  # int64
    scores: np.ndarray  # float64 (under vila: the float32 sums, exactly)


def _float_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """A score column in its own float width, nulls as NaN."""
    return batch.column(name).to_numpy(zero_copy_only=False)


def _ids(batch: pa.RecordBatch) -> np.ndarray:
    """The id column as int64 (nulls as 0: they are masked out; a plain to_numpy would turn the column into
    float64 and round ids beyond 2**53)."""
    return batch.column("id").fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def policy_scores(batch: pa.RecordBatch, policy: Policy) -> np.ndarray:
    """vitb32 + vitl14 as the policy computes it: VILA's pandas adds in the columns' own dtype (float32 in
    the real files), curated in float64."""
    b, l = (_float_column(batch, c) for c in SCORE_COLUMNS)
    if policy is Policy.vila:
        return b + l
    return b.astype(np.float64) + l.astype(np.float64)


def passes_gate(scores: np.ndarray, min_score: float) -> np.ndarray:
    """``scores > min_score`` compared in the scores' dtype, as numpy (and pandas) compare a float32 column
    with a Python float; NaN never passes."""
    return scores > scores.dtype.type(min_score)


def _batch_candidates(batch: pa.RecordBatch, policy: Policy, min_score: float, counts: dict[str, int]):
    """(ranked mask, scores) of one batch, counting why rows are not ranked."""
    has_id = batch.column("id").is_valid().to_numpy(zero_copy_only=False)
    scores = policy_scores(batch, policy)
    b, l = (_float_column(batch, c).astype(np.float64) for c in SCORE_COLUMNS)
    has_scores = ~(np.isnan(b) | np.isnan(l))
    in_range = has_scores & (np.abs(b) <= 1) & (np.abs(l) <= 1)
    counts["null id"] += int((~has_id).sum())
    counts["missing clip score"] += int((has_id & ~has_scores).sum())
    if policy is Policy.vila:  # VILA ranks them like any number; NaN just fails the gate
        counts["_ranked out of range"] += int((has_id & has_scores & ~in_range & passes_gate(scores, min_score)).sum())
        return has_id & passes_gate(scores, min_score), scores
    counts["clip score out of [-1, 1]"] += int((has_id & has_scores & ~in_range).sum())
    return has_id & in_range & passes_gate(scores, min_score), scores


# Score histogram for the floor under the wanted rows: 1/4096 bins over [-8, 8), scores clipped into it (the
# clipping keeps out-of-range sums that vila ranks in the top and bottom bins, where the floor logic expects them).
_BINS_PER_UNIT = 4096
_BIN_SPAN = 8
_N_BINS = 2 * _BIN_SPAN * _BINS_PER_UNIT


def _bins(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores.astype(np.float64), -_BIN_SPAN, _BIN_SPAN - 1 / _BINS_PER_UNIT)
    return np.floor(clipped * _BINS_PER_UNIT).astype(np.int64) + _BIN_SPAN * _BINS_PER_UNIT


def _census(path: str | os.PathLike[str], config: SelectionConfig, where: str) -> _Census:
    """Pass 1 (ids and scores only): counts, repeated ids among the rows above the gate, and the histogram."""
    counts = dict.fromkeys(["null id", "missing clip score", "clip score out of [-1, 1]", "_ranked out of range"], 0)
    hist, ids, n = np.zeros(_N_BINS, np.int64), [], 0
    for offset, batch in iter_shard_batches(path, ["id", *SCORE_COLUMNS], where, config.batch_rows):
        keep, s = _batch_candidates(batch, config.policy, config.min_score, counts)
        hist += np.bincount(_bins(s[keep]), minlength=_N_BINS)
        ids.append(_ids(batch)[keep])
        n = offset + batch.num_rows
    repeated, examples = _repeats(np.concatenate(ids) if ids else np.zeros(0, np.int64))
    ranked_odd = counts.pop("_ranked out of range")
    return _Census(n, {k: v for k, v in counts.items() if v}, ranked_odd, repeated, examples, hist)


def _floor_bin(hist: np.ndarray, wanted: int) -> int:
    """The highest bin such that the rows in it and above number at least ``wanted`` (0: take every row).
    Collecting only those keeps the candidate arrays near ``wanted`` instead of every passing row (a third
    more on real shards); exactness is untouched, every row at the cut's score is in."""
    at_or_above = np.cumsum(hist[::-1])
    if wanted <= 0 or at_or_above[-1] <= wanted:
        return 0
    return len(hist) - 1 - int(np.argmax(at_or_above >= wanted))


def _collect(path: str | os.PathLike[str], config: SelectionConfig, census: _Census, floor: int,
             where: str) -> _Candidates:
    """Pass 2: (row, id, score) of every ranked row above the gate in bin ``floor`` or higher, into arrays
    sized from the histogram."""
    size = int(census.hist[floor:].sum())
    out = _Candidates(np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.float64))
    filled, scratch = 0, dict.fromkeys(["null id", "missing clip score", "clip score out of [-1, 1]",
                                        "_ranked out of range"], 0)
    for offset, batch in iter_shard_batches(path, ["id", *SCORE_COLUMNS], where, config.batch_rows):
        keep, s = _batch_candidates(batch, config.policy, config.min_score, scratch)
        idx = np.flatnonzero(keep)
        idx = idx[_bins(s[idx]) >= floor]
        if filled + len(idx) > size:
            raise RuntimeError(f"{where}: more rows above the floor than counted; did the file change?")
        out.rows[filled:filled + len(idx)] = idx + offset
        out.ids[filled:filled + len(idx)] = _ids(batch)[idx]
        out.scores[filled:filled + len(idx)] = s[idx]
        filled += len(idx)
    if filled != size:
        raise RuntimeError(f"{where}: {filled} rows above the floor, {size} counted; did the file change?")
    return out


def rank_order(rows: np.ndarray, ids: np.ndarray, scores: np.ndarray, policy: Policy,
               ids_repeat: bool = True) -> np.ndarray:
    """Indices of the ranked rows, best first, with the policy's tie-break and (curated) one row per id.

    vila: score descending, then file order (what a stable descending sort gives); curated: score
    descending, then ``id``, then file order, and only the first row of each id. The candidates arrive in
    file order (``rows`` ascending) and both sorts are stable, so file order needs no sort key of its own.
    ``ids_repeat`` False (known from the census) skips the search for repeats.
    """
    if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():
        raise ValueError("candidates must be in file order")
    if policy is Policy.vila:
        return np.argsort(-scores, kind="stable")
    order = np.lexsort((ids, -scores))
    if not ids_repeat:
        return order
    _, first = np.unique(ids[order], return_index=True)
    return order[np.sort(first)]


def _repeats(ids: np.ndarray) -> tuple[int, list[int]]:
    """(rows whose id an earlier row has, a few such ids). Sorts ``ids`` in place (no copy)."""
    ids.sort()
    same = ids[1:] == ids[:-1]
    return int(same.sum()), [int(i) for i in np.unique(ids[1:][same][:50])[:5]]


def select_top(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    config: SelectionConfig = SelectionConfig(),
    name: str | None = None,
) -> SelectionSummary:
    """Write the selection of shard ``path`` to ``out_path`` (parquet, :data:`SELECTION_SCHEMA`, rank order).

    The rank order is total (see :func:`rank_order`), so the selection and its order are a pure function
    of the shard and the policy.
    """
    where = name or str(path)
    census = _census(path, config, where)
    wanted = config.wanted(census.n)
    floor = _floor_bin(census.hist, wanted)
    cand = _collect(path, config, census, floor, where)
    repeats = census.repeated_id_rows > 0
    order = rank_order(cand.rows, cand.ids, cand.scores, config.policy, repeats)
    passes = 2
    if len(order) < wanted and floor > 0:  # curated: repeats left out left too few above the floor
        floor, cand, passes = 0, _collect(path, config, census, 0, where), 3
        order = rank_order(cand.rows, cand.ids, cand.scores, config.policy, repeats)
    chosen = order[:wanted]
    sel_rows, sel_scores = cand.rows[chosen], cand.scores[chosen]
    cut = float(sel_scores[-1]) if len(chosen) else None
    summary = SelectionSummary(
        rows=census.n, invalid=census.invalid, passing=census.passing, target=config.target(census.n),
        wanted=wanted, selected=len(chosen), cut=cut,
        ties_at_cut=int((cand.scores[order] == cut).sum()) if cut is not None else 0,
        ties_kept=int((sel_scores == cut).sum()) if cut is not None else 0,
        passes=passes, max_rows_held=0, policy=config.policy.value, min_score=config.min_score,
        fraction=config.fraction, oversample=config.oversample, repeated_id_rows=census.repeated_id_rows,
        repeated_ids=census.repeated_ids, repeats_dropped=len(cand.rows) - len(order),
        out_of_range_ranked=census.out_of_range_ranked,
    )
    del cand, order, census
    summary.warnings += selection_warnings(summary, where)
    _write_in_rank_order(path, sel_rows, sel_scores, out_path, config, summary, where)
    return summary


def selection_warnings(summary: SelectionSummary, where: str) -> list[str]:
    """What a person should hear about this shard: shortfall, VILA's assert, repeated ids, odd rows."""
    out = []
    if summary.vila_assert_fails:
        out.append(f"{where}: only {summary.passing} of {summary.rows} rows ({summary.pass_rate:.1%}) pass "
                   f"clip_sim > {summary.min_score}; VILA's `assert kept/n > {summary.fraction}` would stop this "
                   f"shard; selected {summary.selected} (target {summary.target})")
    elif summary.selected < summary.wanted:
        out.append(f"{where}: {summary.passing} rows pass clip_sim > {summary.min_score}; selected all of them, "
                   f"{summary.wanted - summary.selected} short of {summary.wanted}")
    if summary.repeated_id_rows:
        action = ("kept (vila)" if summary.policy == Policy.vila.value
                  else f"{summary.repeats_dropped} repeat(s) left out (curated)")
        out.append(f"{where}: {summary.repeated_id_rows} row(s) above the gate repeat an id of an earlier row "
                   f"(e.g. {', '.join(map(str, summary.repeated_ids))}); {action}")
    out += [f"{where}: {k} row(s) not ranked: {reason}" for reason, k in summary.invalid.items()]
    if summary.out_of_range_ranked:
        out.append(f"{where}: {summary.out_of_range_ranked} row(s) above the gate have a clip score outside "
                   "[-1, 1]; ranked as VILA ranks them (vila)")
    return out


_ROW_COLUMNS = ["id", "url", "text", *SCORE_COLUMNS]


def _write_in_rank_order(path: str | os.PathLike[str], sel_rows: np.ndarray, sel_scores: np.ndarray,
                         out_path: str | os.PathLike[str], config: SelectionConfig, summary: SelectionSummary,
                         where: str) -> None:
    """The full rows of the selection, in rank order: one more pass over the shard drops each selected row
    into the file of its rank bucket (``bucket_rows`` ranks each, beside ``out_path``), then the buckets are
    read back one at a time, put in rank order and written out (counted in ``summary``)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.buckets-") as scratch:
        buckets = _gather_buckets(path, sel_rows, config, Path(scratch), where)
        summary.passes += 1
        with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, SELECTION_SCHEMA, compression="zstd") as writer:
            for b, bucket in enumerate(buckets):
                lo = b * config.bucket_rows
                table = _bucket_table(bucket, sel_rows[lo:lo + config.bucket_rows],
                                      sel_scores[lo:lo + config.bucket_rows], lo, config.policy, where)
                summary.max_rows_held = max(summary.max_rows_held, table.num_rows)
                writer.write_table(table)
            if not len(sel_rows):
                writer.write_table(SELECTION_SCHEMA.empty_table())


def _gather_buckets(path: str | os.PathLike[str], sel_rows: np.ndarray, config: SelectionConfig, scratch: Path,
                    where: str) -> list[Path]:
    """One streaming pass: every selected row, with its rank, appended to its rank bucket's file."""
    by_row = np.argsort(sel_rows, kind="stable")  # rank of the j-th selected row in file order: by_row[j]
    rows_in_order = sel_rows[by_row]
    n_buckets = -(-len(sel_rows) // config.bucket_rows)
    files = [scratch / f"{b:05d}.parquet" for b in range(n_buckets)]
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for offset, batch in iter_shard_batches(path, _ROW_COLUMNS, where, config.batch_rows):
            lo, hi = np.searchsorted(rows_in_order, [offset, offset + batch.num_rows])
            if lo == hi:
                continue
            ranks = by_row[lo:hi]
            taken = pa.Table.from_batches([batch.take(pa.array(rows_in_order[lo:hi] - offset))])
            taken = taken.append_column("rank", pa.array(ranks, pa.int64()))
            bucket_of = ranks // config.bucket_rows
            for b in np.unique(bucket_of):
                if b not in writers:
                    writers[b] = pq.ParquetWriter(files[b], taken.schema)
                writers[b].write_table(taken.filter(pa.array(bucket_of == b)))
    finally:
        for w in writers.values():
            w.close()
    return files


def _bucket_table(bucket: Path, rows: np.ndarray, scores: np.ndarray, first_rank: int, policy: Policy,
                  where: str) -> pa.Table:
    """One rank bucket's rows in rank order, checked against the ranking (rows and scores unchanged)."""
    got = pq.read_table(bucket) if bucket.is_file() else None
    ranks = got.column("rank").to_numpy() if got is not None else np.zeros(0, np.int64)
    order = np.argsort(ranks, kind="stable")
    if not np.array_equal(ranks[order], np.arange(first_rank, first_rank + len(rows))):
        raise RuntimeError(f"{where}: rank bucket at {first_rank} lost rows; did the file change during selection?")
    got = got.take(pa.array(order)).combine_chunks()
    reread = policy_scores(got.to_batches()[0], policy).astype(np.float64)
    if not np.array_equal(reread, scores):
        raise RuntimeError(f"{where}: scores changed between passes (rank bucket at {first_rank})")
    ids = got.column("id").cast(pa.int64())
    return pa.table({
        "rank": pa.array(np.arange(first_rank, first_rank + len(rows)), pa.int64()),
        "row": pa.array(rows, pa.int64()),
        "id": ids,
        "key": ids.cast(pa.string()),
        "url": got.column("url").cast(pa.string()),
        "caption": got.column("text").cast(pa.string()),
        "clip_sim": pa.array(scores, pa.float64()),
        "clip_similarity_vitb32": got.column(SCORE_COLUMNS[0]).cast(pa.float64()),
    }, schema=SELECTION_SCHEMA)


def verify_selection(
    path: str | os.PathLike[str], selection_path: str | os.PathLike[str], summary: SelectionSummary,
    batch_rows: int = 65_536,
) -> list[str]:
    """Independent re-check of a selection against its shard; an empty list means it is right.

    Every selected row is above the gate; ranks run 0..m-1 in the policy's order (score desc, then row
    under vila, id under curated, whose ids are unique); the count is the wanted count or, on a shortfall,
    every ranked row; and no ranked row outside the selection beats the last selected one (counted by a
    fresh streaming pass, not taken from the selection code).
    """
    policy = as_policy(summary.policy)
    sel = read_parquet_table(selection_path, ["rank", "row", "id", "clip_sim"])
    m, problems = sel.num_rows, []
    rank, row, ids, s = (sel.column(c).to_numpy() for c in ("rank", "row", "id", "clip_sim"))
    if m != summary.selected:
        problems.append(f"selection has {m} rows, summary says {summary.selected}")
    if not np.array_equal(rank, np.arange(m)):
        problems.append("ranks are not 0..m-1 in file order")
    if m and (s <= summary.min_score).any():  # the exact float32 gate is re-applied by the count below
        problems.append(f"{int((s <= summary.min_score).sum())} selected row(s) at or below the gate")
    tie = row if policy is Policy.vila else ids
    if m > 1:
        out_of_order = (s[1:] > s[:-1]) | ((s[1:] == s[:-1]) & (tie[1:] <= tie[:-1]))
        if out_of_order.any():
            problems.append(f"rank order broken at rank {int(np.argmax(out_of_order)) + 1}")
    if policy is Policy.curated and len(np.unique(ids)) != m:
        problems.append("an id is selected twice under curated")
    eligible = summary.passing - summary.repeats_dropped
    if m != min(summary.wanted, eligible):
        problems.append(f"selected {m} rows, expected min(wanted {summary.wanted}, passing {eligible})")
    if m:
        better = _count_at_or_above(path, policy, summary.min_score, float(s[-1]), int(tie[-1]), batch_rows)
        if better != m:
            problems.append(f"{better} rows of the shard rank at or above the cut, but {m} were selected")
    return problems


def _count_at_or_above(path: str | os.PathLike[str], policy: Policy, min_score: float, cut: float, last: int,
                       batch_rows: int) -> int:
    """Rows (curated: distinct ids) that rank at or above the last selected row, from a fresh pass."""
    count, better_ids = 0, []
    for offset, batch in iter_shard_batches(path, ["id", *SCORE_COLUMNS], str(path), batch_rows):
        b = batch.column(SCORE_COLUMNS[0]).to_numpy(zero_copy_only=False)
        l = batch.column(SCORE_COLUMNS[1]).to_numpy(zero_copy_only=False)
        has_id = batch.column("id").is_valid().to_numpy(zero_copy_only=False)
        if policy is Policy.vila:
            s = b + l
            ok = has_id & (s > s.dtype.type(min_score))
            tie = np.arange(offset, offset + batch.num_rows)
        else:
            b, l = b.astype(np.float64), l.astype(np.float64)
            s = b + l
            ok = has_id & (np.abs(b) <= 1) & (np.abs(l) <= 1) & (s > min_score)
            tie = _ids(batch)
        s = s.astype(np.float64)
        above = ok & ((s > cut) | ((s == cut) & (tie <= last)))
        if policy is Policy.vila:
            count += int(above.sum())
        else:
            better_ids.append(tie[above].astype(np.int64))
    return count if policy is Policy.vila else len(np.unique(np.concatenate(better_ids or [np.zeros(0, np.int64)])))


def iter_selection(selection_path: str | os.PathLike[str], batch_rows: int = 4096) -> Iterator[dict]:
    """Selection rows in rank order, streamed."""
    for _, batch in iter_parquet_batches(selection_path, None, batch_rows):
        yield from batch.to_pylist()


def selection_rows(selection_path: str | os.PathLike[str]) -> int:
    return parquet_rows(selection_path)


# --------------------------------------------------------------------------------------- crawl batches

_CRAWL_INPUT_SCHEMA = pa.schema([("key", pa.string()), ("url", pa.string()), ("caption", pa.string())])


def write_crawl_input(selections: dict[str, Path], path: str | os.PathLike[str]) -> dict[str, int]:
    """One crawler input for several shards' selections, shard blocks in the given order, keys
    ``"<shard>/<id>"``. Streams one selection at a time; returns rows per shard."""
    counts: dict[str, int] = {}
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, _CRAWL_INPUT_SCHEMA) as writer:
        for shard, sel_path in selections.items():
            sel = read_parquet_table(sel_path, ["key", "url", "caption"]).cast(_CRAWL_INPUT_SCHEMA)
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

    total = parquet_rows(batch_samples)
    if total != sum(counts.values()):
        raise ValueError(f"{batch_samples}: {total} rows, but the shards' selections hold {sum(counts.values())}")
    batches = (batch for _, batch in iter_parquet_batches(batch_samples, None, batch_rows))
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
