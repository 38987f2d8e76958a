"""FLAN 1M: ``Open-Orca/FLAN`` sampled to VILA's ``text_flan_1m.pkl``, under either data policy, streaming.

VILA (``preprocess_flan.py``) loads every ``inputs``/``targets`` string of every ``*_data`` folder into two
Python lists (~378M each, hundreds of GB) and takes ``torch.linspace(0, N-1, 1_000_000).int()``. Both
policies here know which rows they want before any row is read (pass 1 reads only Parquet footers), then
stream those rows into the pickle and its Parquet copy (pass 2), so memory is O(sample), not O(FLAN).

* ``vila`` (:func:`select_rows_vila`): VILA's rows in VILA's order. Files in VILA's listing order
  (top-level entries ending in ``_data`` sorted, then every entry of each folder sorted as strings:
  ``part.1, part.10, part.2``), rows in file order; the indices are ``torch.linspace``'s, emulated bit
  for bit in numpy (:func:`vila_linspace_indices`). ``id = "text_flan_%08d"`` by sample position.
* ``curated`` (:func:`select_rows`): row identity = (path of the part file inside the repo, row index),
  e.g. ``("flan_fsopt_data/part.10.parquet", 17)``; it depends neither on listing order nor on any library
  version. It is positional on purpose: FLAN contains identical (inputs, targets) rows and each
  occurrence is its own candidate (duplicates that reach the chunks are reported by ``vflan_chunks``).
  The sample is the ``n`` rows with the smallest :func:`vflan.row_hashes` (seeded SplitMix64 of the
  identity; ties by path, then row), kept in a buffer of at most ``2n`` candidates. Output order: natural
  file order (``part.2`` before ``part.10``), then row.

A null ``inputs``/``targets`` in a selected row is an error naming the file and row under both policies
(VILA would write ``None`` and its loader would fail on it).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.policy import Difference, Policy, as_policy
from vila_assets.core.vflan import FLAN_STEM, PerFileLayout, SourceFileWriter, SourceInfo, make_record, natural_key, row_hashes

FLAN_REPO = "Open-Orca/FLAN"
DEFAULT_SAMPLE_SIZE = 1_000_000
FLAN_FOLDERS = (
    "cot_fsopt_data",
    "cot_zsopt_data",
    "dialog_fsopt_data",
    "dialog_zsopt_data",
    "flan_fsnoopt_data",
    "flan_fsopt_data",
    "flan_zsnoopt_data",
    "flan_zsopt_data",
    "niv2_fsopt_data",
    "niv2_zsopt_data",
    "t0_fsnoopt_data",
    "t0_fsopt_data",
    "t0_zsnoopt_data",
    "t0_zsopt_data",
)
REQUIRED_COLUMNS = ("inputs", "targets")
# float32 holds every integer below 2**24 exactly: the emulation's sample positions must be exact
MAX_VILA_SAMPLE = 1 << 24

POLICY_DIFFERENCES = (
    Difference(
        "FLAN", "files read",
        "every entry of every top-level `*_data` folder, read with pandas.read_parquet (anything else crashes)",
        "same files in the same order; an entry that is not a Parquet file is an error naming it",
        "the `.parquet` files below `*_data` folders; anything else is listed and skipped"),
    Difference(
        "FLAN", "row selection",
        "all ~378M rows loaded into two lists, then `torch.linspace(0, N-1, 1M).int()` in listing order "
        "(part.10 before part.2)",
        "same indices (float32 linspace emulated bit for bit), rows streamed from Parquet footers; an index "
        "float32 rounds past the last row (VILA: IndexError) is clamped to the last row and counted",
        "the n rows with the smallest seeded hash of (file, row); another seed gives another sample"),
    Difference(
        "FLAN", "sample larger than FLAN", "rows repeat (linspace steps below 1)", "same",
        "every row once"),
    Difference(
        "FLAN", "record order and ids", "linspace order; `text_flan_%08d` by position", "same",
        "natural file order (part.2 before part.10), then row; `text_flan_%08d` by position"),
)


class FlanInputError(ValueError):
    """A FLAN part file is unusable; the message names the file (and row)."""


def _top(relpath: str) -> str:
    return relpath.split("/", 1)[0]


def is_flan_part(relpath: str) -> bool:
    """Curated: the Parquet files below a top-level folder whose name ends in ``_data``."""
    return _top(relpath).endswith("_data") and "/" in relpath and relpath.endswith(".parquet")


def vila_order_key(relpath: str) -> tuple[str, str]:
    """VILA's order: ``sorted(os.listdir(root))`` of the folders, then ``sorted(os.listdir(folder))``."""
    folder, _, name = relpath.partition("/")
    return folder, name


def part_paths(relpaths: Iterable[str], policy: Policy | str = Policy.curated) -> tuple[list[str], list[str]]:
    """(the part files a policy reads, in its order; the files below ``*_data`` folders it skips).

    ``vila`` reads every entry of each ``*_data`` folder, as VILA does: an entry that is not a Parquet file
    (or a nested folder, which VILA would hand to pandas as a directory) is an error naming it."""
    in_data = [r for r in relpaths if _top(r).endswith("_data") and "/" in r]
    if as_policy(policy) is Policy.vila:
        nested = [r for r in in_data if r.count("/") > 1]
        if nested:
            raise FlanInputError(f"{nested[0]}: a nested entry in a *_data folder; VILA's script reads every "
                                 "entry of the folder as one Parquet file")
        return sorted(in_data, key=vila_order_key), []
    parts = [r for r in in_data if r.endswith(".parquet")]
    return sorted(parts), sorted(set(in_data) - set(parts))


@dataclass(frozen=True)
class FlanPart:
    relpath: str  # path inside the repo: the stable identity, and what errors name
    path: Path  # local file


@dataclass(frozen=True)
class FlanSelection:
    parts: list[FlanPart]
    rows: list[int]  # rows per part
    part_idx: np.ndarray  # selected rows: index into parts ...
    row_idx: np.ndarray  # ... and row within that part (repeats allowed: vila with n > rows)
    max_candidates: int  # the most row references held at once in pass 1
    order: list[int] = field(default_factory=list)  # parts in output order (indices into parts)
    past_end: int = 0  # vila: linspace indices float32 rounded past the last row (clamped)

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


def _part_rows(part: FlanPart) -> int:
    try:
        pf = pq.ParquetFile(part.path)
    except Exception as exc:  # pyarrow raises several types for a truncated, empty or foreign file
        raise FlanInputError(f"{part.relpath}: not a readable Parquet file ({exc})") from exc
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise FlanInputError(f"{part.relpath}: missing column(s) {missing}; has {sorted(names)}")
    for col in REQUIRED_COLUMNS:
        t = pf.schema_arrow.field(col).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
            raise FlanInputError(f"{part.relpath}: column {col!r} is {t}, not a string")
    return pf.metadata.num_rows


def release_memory() -> None:
    """Hand freed memory back to the OS: Arrow's allocator and glibc's heap both keep freed pages, so
    without this the peak RSS creeps up with the number of parts read and candidate reductions made."""
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


# --- curated: the n smallest seeded hashes -------------------------------------------------------------


def _keep_smallest(h, p, r, n):
    """The ``n`` smallest by (hash, part, row); exact at ties on the hash."""
    if n == 0:
        return h[:0], p[:0], r[:0]
    if len(h) <= n:
        return h, p, r
    kth = np.partition(h, n - 1)[n - 1]
    below = h < kth
    tied = np.nonzero(h == kth)[0]
    fill = n - int(below.sum())
    tied = tied[np.lexsort((r[tied], p[tied]))][:fill]
    keep = np.concatenate([np.nonzero(below)[0], tied])
    return h[keep], p[keep], r[keep]


def select_rows(parts: list[FlanPart], n: int, seed: int, hash_block: int = 1 << 22) -> FlanSelection:
    """Curated pass 1: which rows form the sample. Reads only Parquet footers."""
    if n < 0:
        raise ValueError("sample size must be >= 0")
    parts = sorted(parts, key=lambda p: p.relpath)
    if len({p.relpath for p in parts}) != len(parts):
        raise FlanInputError("the same part file is listed twice")
    rows = [_part_rows(p) for p in parts]
    h = np.empty(0, np.uint64)
    pi = np.empty(0, np.int32)
    ri = np.empty(0, np.int64)
    threshold: np.uint64 | None = None
    peak = 0
    for idx, (part, nrows) in enumerate(zip(parts, rows)):
        for start in range(0, nrows, hash_block):
            count = min(hash_block, nrows - start)
            hb = row_hashes(seed, part.relpath, start, count)
            rb = np.arange(start, start + count, dtype=np.int64)
            if threshold is not None:
                keep = hb <= threshold  # anything above the current n-th smallest can never enter
                hb, rb = hb[keep], rb[keep]
            h = np.concatenate([h, hb])
            pi = np.concatenate([pi, np.full(len(hb), idx, np.int32)])
            ri = np.concatenate([ri, rb])
            peak = max(peak, len(h))
            if len(h) >= 2 * max(n, 1):
                h, pi, ri = _keep_smallest(h, pi, ri, n)
                threshold = h.max() if len(h) else np.uint64(0)
    h, pi, ri = _keep_smallest(h, pi, ri, n)
    release_memory()
    order = sorted(range(len(parts)), key=lambda i: natural_key(parts[i].relpath))
    return FlanSelection(parts, rows, pi, ri, peak, order)


# --- vila: torch.linspace over VILA's file order -------------------------------------------------------


def vila_linspace_indices(n_rows: int, size: int) -> np.ndarray:
    """``torch.linspace(0, n_rows - 1, size).int()`` bit for bit, as int64, in numpy.

    torch computes in float32: ``end = fl32(N-1)``, ``step = fl32(end / fl32(size-1))``; position ``i`` below
    ``size // 2`` is ``fl32(step * i)``, the rest ``end - step * (size-1-i)`` rounded once (a fused
    multiply-add). Both are computed exactly in float64 (a 24-bit step times an integer below 2**24,
    minus a float32: at most ~50 significant bits) and rounded once to float32; ``.int()`` truncates.
    """
    if size < 0 or n_rows < 1:
        raise ValueError(f"linspace over {n_rows} rows with {size} steps: nothing to select")
    if size >= MAX_VILA_SAMPLE:
        raise ValueError(f"sample size {size} >= 2**24: the float32 emulation is exact only below that")
    end = np.float32(n_rows - 1)
    if end >= np.float32(2**31):
        raise ValueError(f"{n_rows} rows: torch's .int() (int32) wraps at 2**31, and VILA's list would be read "
                         "from the end; the emulation stops there")
    if size <= 1:
        return np.zeros(size, np.int64)  # torch: one step is the start
    step = np.float32(end / np.float32(size - 1))
    half = size // 2
    i = np.arange(size, dtype=np.float64)
    out = np.empty(size, np.float32)
    out[:half] = (np.float64(step) * i[:half]).astype(np.float32)
    out[half:] = (np.float64(end) - np.float64(step) * (size - 1 - i[half:])).astype(np.float32)
    return out.astype(np.int64)


def select_rows_vila(parts: list[FlanPart], n: int) -> FlanSelection:
    """Vila pass 1: the rows ``preprocess_flan.py`` picks, from the Parquet footers alone."""
    parts = sorted(parts, key=lambda p: vila_order_key(p.relpath))
    rows = [_part_rows(p) for p in parts]
    total = sum(rows)
    if total == 0:
        raise FlanInputError(f"{len(parts)} part file(s) hold no rows; VILA's script fails on an empty FLAN")
    idx = vila_linspace_indices(total, n)
    past_end = int((idx >= total).sum())
    idx = np.minimum(idx, total - 1)
    if np.any(np.diff(idx) < 0):  # never below 2**24 steps; written out because pass 2 relies on it
        raise ValueError("linspace indices are not monotonic; pass 2 streams rows in file order")
    bounds = np.cumsum([0, *rows])
    part_idx = np.searchsorted(bounds, idx, side="right") - 1
    row_idx = idx - bounds[part_idx]
    return FlanSelection(parts, rows, part_idx.astype(np.int32), row_idx, n, list(range(len(parts))), past_end)


# --- pass 2: stream the selected rows ------------------------------------------------------------------


@dataclass(frozen=True)
class FlanSampleSummary:
    info: SourceInfo
    total_rows: int
    parts: int
    folders: dict[str, int]  # rows selected per folder
    max_candidates: int
    past_end: int = 0


def _stream_part(part: FlanPart, wanted: np.ndarray, batch_rows: int):
    """``(row, inputs, targets)`` for each wanted row (sorted; repeats allowed) of one part file."""
    offset = 0
    try:
        pf = pq.ParquetFile(part.path)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=list(REQUIRED_COLUMNS)):
            a, b = np.searchsorted(wanted, [offset, offset + batch.num_rows])
            if b > a:
                sub = batch.take(pa.array(wanted[a:b] - offset))
                yield from zip(wanted[a:b].tolist(), sub.column(0).to_pylist(), sub.column(1).to_pylist())
            offset += batch.num_rows
            if offset > wanted[-1]:
                break
    except (OSError, pa.ArrowException) as exc:  # a data page that cannot be read or decompressed
        raise FlanInputError(f"{part.relpath}: unreadable near row {offset} ({exc})") from exc


def write_sample(selection: FlanSelection, layout: PerFileLayout, stem: str = FLAN_STEM, batch_rows: int = 65_536) -> FlanSampleSummary:
    """Pass 2: stream the selected rows, part by part in ``selection.order``, into ``<stem>.pkl`` + Parquet."""
    by_part = np.argsort(selection.part_idx, kind="stable")
    sorted_parts = selection.part_idx[by_part]
    folders: dict[str, int] = {}
    next_id = 0
    with SourceFileWriter(layout, stem) as out:
        for idx in selection.order:
            lo, hi = np.searchsorted(sorted_parts, [idx, idx + 1])
            wanted = np.sort(selection.row_idx[by_part[lo:hi]])
            if not len(wanted):
                continue
            part = selection.parts[idx]
            folders[_top(part.relpath)] = folders.get(_top(part.relpath), 0) + len(wanted)
            for row, q, t in _stream_part(part, wanted, batch_rows):
                if q is None or t is None:
                    raise FlanInputError(f"{part.relpath} row {row}: {'inputs' if q is None else 'targets'!r} is null")
                out.write(make_record(q, t, f"text_flan_{next_id:08d}", []))
                next_id += 1
            release_memory()
    assert out.info is not None
    return FlanSampleSummary(out.info, selection.total_rows, len(selection.parts), dict(sorted(folders.items())),
                             selection.max_candidates, selection.past_end)


def sample_flan(parts: list[FlanPart], n: int, seed: int, layout: PerFileLayout, stem: str = FLAN_STEM,
                policy: Policy | str = Policy.curated) -> FlanSampleSummary:
    """Sample FLAN and write ``<stem>.pkl`` (VILA format) + Parquet copy: ``vila`` takes VILA's ``n`` rows
    (``seed`` unused), ``curated`` ``min(n, total)`` rows by seeded hash."""
    if as_policy(policy) is Policy.vila:
        selection = select_rows_vila(parts, n)
    else:
        selection = select_rows(parts, n, seed)
    return write_sample(selection, layout, stem)


def local_parts(root: str | os.PathLike[str], policy: Policy | str = Policy.curated) -> list[FlanPart]:
    """The FLAN part files a policy reads under a local copy of the repo (the bench and tests use it)."""
    root = Path(root)
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return [FlanPart(r, root / r) for r in part_paths(rels, policy)[0]]
