"""FLAN 1M: a seeded, streaming sample of ``Open-Orca/FLAN`` in VILA's ``text_flan_1m.pkl`` format.

VILA (``preprocess_flan.py``) loads every ``inputs``/``targets`` string of every ``*_data`` folder into two
Python lists (~378M each, hundreds of GB) and takes ``torch.linspace(0, N-1, 1_000_000).int()``, which
depends on the lexicographic order of ``part.N`` files and on float32 rounding. Here:

* **Row identity** = (path of the part file inside the repo, row index in that file), e.g.
  ``("flan_fsopt_data/part.10.parquet", 17)``. It depends neither on listing order nor on any library
  version. It is positional on purpose: FLAN contains identical (inputs, targets) rows, and each
  occurrence is its own candidate, as in VILA's positional sampling (a content hash would make
  duplicates always selected or dropped together). Duplicates that reach the chunks are reported by
  the ``vflan_chunks`` duplicate check.
* **Selection** = the ``n`` rows with the smallest :func:`vflan.row_hashes` (seeded SplitMix64 of the
  identity; ties by path, then row). Pass 1 needs only each file's row count (Parquet footer): it keeps
  at most ``2n`` candidates (``argpartition`` when the buffer fills, then a threshold that rejects most
  new hashes), so memory is O(n), not O(input).
* **Output order** = natural order of the selected rows (folders sorted, ``part.2`` before ``part.10``,
  then row), ``id = "text_flan_%08d"`` by that order; pass 2 streams each file's selected rows
  (pyarrow ``iter_batches``) straight into the pickle and its Parquet copy.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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


class FlanInputError(ValueError):
    """A FLAN part file is unusable; the message names the file (and row)."""


def is_flan_part(relpath: str) -> bool:
    """VILA reads every top-level entry ending in ``_data``; we take the Parquet files below them."""
    top, _, rest = relpath.partition("/")
    return top.endswith("_data") and bool(rest) and relpath.endswith(".parquet")


@dataclass(frozen=True)
class FlanPart:
    relpath: str  # path inside the repo: the stable identity
    path: Path  # local file


@dataclass(frozen=True)
class FlanSelection:
    parts: list[FlanPart]  # sorted by relpath
    rows: list[int]  # rows per part
    part_idx: np.ndarray  # selected rows: index into parts ...
    row_idx: np.ndarray  # ... and row within that part
    max_candidates: int  # the most (hash, part, row) triples held at once in pass 1

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


def _part_rows(part: FlanPart) -> int:
    try:
        pf = pq.ParquetFile(part.path)
    except Exception as exc:  # pyarrow raises several types for a corrupt footer
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
    """Pass 1: which rows form the sample. Reads only Parquet footers."""
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
    return FlanSelection(parts, rows, pi, ri, peak)


@dataclass(frozen=True)
class FlanSampleSummary:
    info: SourceInfo
    total_rows: int
    parts: int
    folders: dict[str, int]  # rows selected per folder
    max_candidates: int


def write_sample(selection: FlanSelection, layout: PerFileLayout, stem: str = FLAN_STEM, batch_rows: int = 65_536) -> FlanSampleSummary:
    """Pass 2: stream the selected rows, in natural order, into ``<stem>.pkl`` + its Parquet copy."""
    order = sorted(range(len(selection.parts)), key=lambda i: natural_key(selection.parts[i].relpath))
    by_part = np.argsort(selection.part_idx, kind="stable")
    sorted_parts = selection.part_idx[by_part]
    folders: dict[str, int] = {}
    next_id = 0
    with SourceFileWriter(layout, stem) as out:
        for idx in order:
            lo, hi = np.searchsorted(sorted_parts, [idx, idx + 1])
            wanted = np.sort(selection.row_idx[by_part[lo:hi]])
            if not len(wanted):
                continue
            part = selection.parts[idx]
            folder = part.relpath.split("/", 1)[0]
            folders[folder] = folders.get(folder, 0) + len(wanted)
            offset = 0
            pf = pq.ParquetFile(part.path)
            for batch in pf.iter_batches(batch_size=batch_rows, columns=list(REQUIRED_COLUMNS)):
                a, b = np.searchsorted(wanted, [offset, offset + batch.num_rows])
                if b > a:
                    local = wanted[a:b] - offset
                    sub = batch.take(pa.array(local))
                    inputs = sub.column(0).to_pylist()
                    targets = sub.column(1).to_pylist()
                    for row, q, t in zip(wanted[a:b], inputs, targets):
                        if q is None or t is None:
                            col = "inputs" if q is None else "targets"
                            raise FlanInputError(f"{part.relpath} row {int(row)}: {col!r} is null")
                        out.write(make_record(q, t, f"text_flan_{next_id:08d}", []))
                        next_id += 1
                offset += batch.num_rows
                if offset > wanted[-1]:
                    break
            del pf
            release_memory()
    assert out.info is not None
    return FlanSampleSummary(out.info, selection.total_rows, len(selection.parts), dict(sorted(folders.items())), selection.max_candidates)


def sample_flan(parts: list[FlanPart], n: int, seed: int, layout: PerFileLayout, stem: str = FLAN_STEM) -> FlanSampleSummary:
    """Sample ``min(n, total)`` rows of FLAN and write ``<stem>.pkl`` (VILA format) + Parquet copy."""
    return write_sample(select_rows(parts, n, seed), layout, stem)


def local_parts(root: str | os.PathLike[str]) -> list[FlanPart]:
    """The FLAN part files under a local copy of the repo (what the bench and tests use)."""
    root = Path(root)
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    return [FlanPart(r, root / r) for r in rels if is_flan_part(r)]
