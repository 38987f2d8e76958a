"""Sample-level resume: finished rows go to small atomic chunk files, keyed by input row index.

``OUTPUT_DIR/.checkpoint/chunk-<part>-<seq>.parquet`` … each holds whatever rows one crawler process
finished in a window of K rows or T seconds, sorted by index. A kill -9 loses at most the unflushed
windows; a rerun reads only the ``index`` column to learn what is done. The final samples.parquet is a
streaming merge of the chunks in input order, so its bytes do not depend on how many runs, or how many
processes, it took to produce them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path, atomic_write_text
from .writer import CHUNK_SCHEMA, ROW_GROUP_ROWS, SAMPLES_SCHEMA, open_writer, write_table

log = logging.getLogger(__name__)
CHECKPOINT_DIR = ".checkpoint"
MANIFEST = "manifest.json"


class Checkpoint:
    """``part``: which crawler process writes through this object (it names the chunks).
    ``attach``: join a checkpoint the parent process already validated, never wipe it."""

    def __init__(
        self,
        output_dir: Path,
        fingerprint: dict,
        total: int,
        flush_rows: int = 256,
        flush_s: float = 5.0,
        part: int = 0,
        attach: bool = False,
    ):
        self.dir = Path(output_dir) / CHECKPOINT_DIR
        self.total = total
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.part = part
        self.done = bytearray(total)  # 1 byte per input row: 10 M URLs -> 10 MB
        self.resumed = 0
        self._buffer: list[dict] = []
        self._last_flush = time.monotonic()
        self._seq = 0
        self._open(fingerprint, attach)

    def _open(self, fingerprint: dict, attach: bool) -> None:
        fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))  # tuples -> lists, as stored
        manifest = self.dir / MANIFEST
        if attach:
            if not manifest.exists():
                raise RuntimeError(f"{self.dir}: no checkpoint to attach to")
        elif self.dir.exists():
            try:
                same = json.loads(manifest.read_text()) == fingerprint
            except (OSError, ValueError):
                same = False
            if not same:
                log.warning("checkpoint in %s is for another input or config; starting over", self.dir)
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not manifest.exists():
            atomic_write_text(manifest, json.dumps(fingerprint, sort_keys=True))
        mine = f"chunk-{self.part:03d}-"
        for path in self._chunks():
            if path.name.startswith(mine):
                self._seq = max(self._seq, int(path.stem.rsplit("-", 1)[1]) + 1)
            for idx in _indices(path).tolist():
                if not self.done[idx]:
                    self.done[idx] = 1
                    self.resumed += 1

    def _chunks(self) -> list[Path]:
        return sorted(self.dir.glob("chunk-*.parquet"))

    def is_done(self, index: int) -> bool:
        return bool(self.done[index])

    def add(self, row: dict) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        rows = sorted(self._buffer, key=lambda r: r["index"])
        self._buffer = []
        with atomic_path(self.dir / f"chunk-{self.part:03d}-{self._seq:06d}.parquet") as tmp:
            write_table(tmp, rows, CHUNK_SCHEMA)
        self._seq += 1
        for r in rows:
            self.done[r["index"]] = 1

    def assemble(self, target: Path) -> dict[str, int]:
        """Write samples.parquet atomically from the chunks, in input order; return status counts.

        Streams in windows of one row group: a chunk is read when the window reaches its first row and
        dropped once the window passes its last, so memory holds the chunks that straddle the window.
        Rows move as Arrow columns (no per-row Python), and every window is written as one contiguous
        row group, so the bytes do not depend on how the rows were spread over chunks.
        """
        self.flush()
        spans = []
        for path in self._chunks():
            idx = _indices(path)
            if len(idx):
                spans.append((int(idx[0]), int(idx[-1]), str(path)))  # a chunk is sorted by index
        spans.sort()
        counts: dict[str, int] = {}
        loaded: dict[str, tuple[np.ndarray, pa.Table, int]] = {}
        taken = 0
        with atomic_path(target) as tmp, open_writer(tmp, SAMPLES_SCHEMA) as writer:
            for start in range(0, self.total, ROW_GROUP_ROWS):
                end = min(start + ROW_GROUP_ROWS, self.total)
                while taken < len(spans) and spans[taken][0] < end:
                    _lo, hi, path = spans[taken]
                    table = pq.ParquetFile(path).read()
                    loaded[path] = (table.column("index").to_numpy(), table, hi)
                    taken += 1
                window = _window(loaded, start, end)
                for status, n in zip(*_value_counts(window.column("status"))):
                    counts[status] = counts.get(status, 0) + n
                writer.write_table(window, row_group_size=ROW_GROUP_ROWS)
                for path in [p for p, (_, _, hi) in loaded.items() if hi < end]:
                    del loaded[path]
        return counts

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _window(loaded: dict, start: int, end: int) -> pa.Table:
    """Rows ``start..end-1`` from the loaded chunks as one contiguous table in the samples schema."""
    pieces = []
    for idx, table, _ in loaded.values():
        a, b = np.searchsorted(idx, [start, end])
        if b > a:
            pieces.append(table.slice(a, b - a))
    if not pieces:
        raise RuntimeError(f"checkpoint is inconsistent: no rows for {start}..{end - 1}")
    window = pa.concat_tables(pieces)
    index = window.column("index").to_numpy()
    order = np.argsort(index, kind="stable")  # stable: of two copies the earlier chunk's comes first
    first = np.ones(len(order), dtype=bool)
    first[1:] = index[order][1:] != index[order][:-1]
    if not first.all():
        # Finished twice (only possible if a process of a killed run outlived it): the chunk order is
        # fixed by the chunk set, so keeping the first copy is deterministic.
        log.warning("checkpoint: %d rows in %d..%d were finished twice; keeping the first copies",
                    int((~first).sum()), start, end - 1)
    order = order[first]
    if not np.array_equal(index[order], np.arange(start, end)):
        missing = sorted(set(range(start, end)) - set(index.tolist()))[:5]
        raise RuntimeError(f"checkpoint is inconsistent: rows {missing} of {start}..{end - 1} are missing")
    window = window.take(pa.array(order)).select(SAMPLES_SCHEMA.names).combine_chunks()
    return pa.Table.from_arrays(window.columns, schema=SAMPLES_SCHEMA)


def _indices(path: Path | str) -> np.ndarray:
    """The ``index`` column of a chunk (ParquetFile, not read_table: no dataset machinery to import)."""
    return pq.ParquetFile(path).read(columns=["index"]).column("index").to_numpy()


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counted = Counter(column.to_pylist())  # one row group's worth
    return list(counted), list(counted.values())


def input_fingerprint(path: os.PathLike[str] | str, config_fields: dict) -> dict:
    st = os.stat(path)
    return {"input": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "config": config_fields}
