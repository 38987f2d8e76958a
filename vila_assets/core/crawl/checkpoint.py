"""Sample-level resume: finished rows go to small atomic chunk files, keyed by input row index.

``OUTPUT_DIR/.checkpoint/chunk-<part>-<seq>.parquet`` … each holds whatever rows one crawler process
finished in a window of K rows or T seconds, sorted by index. A kill -9 loses at most the unflushed
windows; a rerun reads only the ``index`` column to learn what is done. The final samples.parquet is a
streaming merge of the chunks in input order, so its bytes do not depend on how many runs, or how many
processes, it took to produce them.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from ..atomic import atomic_path, atomic_write_text
from .writer import CHUNK_SCHEMA, ROW_GROUP_ROWS, SAMPLES_SCHEMA, open_writer, rows_to_table, write_table

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
            for idx in pq.read_table(path, columns=["index"]).column("index").to_pylist():
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

    def _merged(self) -> Iterator[dict]:
        """All checkpointed rows in index order; a chunk is opened only when the merge reaches it."""
        chunks = []
        for path in self._chunks():
            col = pq.read_table(path, columns=["index"]).column("index")
            if len(col):
                chunks.append((col[0].as_py(), str(path)))
        chunks.sort()
        heap: list[tuple[int, int, dict, Iterator[dict]]] = []

        def rows_of(path: str) -> Iterator[dict]:
            pf = pq.ParquetFile(path)
            for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS):
                yield from batch.to_pylist()

        def push(n: int, it: Iterator[dict]) -> None:
            row = next(it, None)
            if row is not None:
                heapq.heappush(heap, (row["index"], n, row, it))

        pending = 0
        while heap or pending < len(chunks):
            while pending < len(chunks) and (not heap or chunks[pending][0] <= heap[0][0]):
                push(pending, rows_of(chunks[pending][1]))
                pending += 1
            _, n, row, it = heapq.heappop(heap)
            yield row
            push(n, it)

    def assemble(self, target: Path) -> dict[str, int]:
        """Write samples.parquet atomically from the chunks; return status counts."""
        self.flush()
        counts: dict[str, int] = {}
        expected = 0
        names = SAMPLES_SCHEMA.names
        with atomic_path(target) as tmp, open_writer(tmp, SAMPLES_SCHEMA) as writer:
            batch: list[dict] = []
            for row in self._merged():
                if row["index"] < expected:
                    # Finished twice (only possible if a process of a killed run outlived it): the merge
                    # order is fixed by the chunk set, so keeping the first copy is deterministic.
                    log.warning("checkpoint: row %d was finished twice; keeping the first copy", row["index"])
                    continue
                if row["index"] != expected:
                    raise RuntimeError(f"checkpoint is inconsistent: expected row {expected}, found {row['index']}")
                expected += 1
                counts[row["status"]] = counts.get(row["status"], 0) + 1
                batch.append({k: row[k] for k in names})
                if len(batch) == ROW_GROUP_ROWS:
                    writer.write_table(rows_to_table(batch, SAMPLES_SCHEMA), row_group_size=ROW_GROUP_ROWS)
                    batch = []
            if batch:
                writer.write_table(rows_to_table(batch, SAMPLES_SCHEMA), row_group_size=ROW_GROUP_ROWS)
            if expected != self.total:
                raise RuntimeError(f"checkpoint holds {expected} of {self.total} rows")
        return counts

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def input_fingerprint(path: os.PathLike[str] | str, config_fields: dict) -> dict:
    st = os.stat(path)
    return {"input": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "config": config_fields}
