"""Stream the input URL list (Parquet or JSONL) as ``InputRow``s, never holding it all in memory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

BATCH_ROWS = 4096


@dataclass(frozen=True, slots=True)
class InputRow:
    index: int
    key: str
    url: str | None
    caption: str | None


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _text(value) -> str | None:
    return None if value is None else str(value)


def count_rows(path: str | os.PathLike[str]) -> int:
    """Row count, validating the input on the way (a bad line fails here, before any download)."""
    path = Path(path)
    if _is_parquet(path):
        pf = pq.ParquetFile(path)
        if "url" not in pf.schema_arrow.names:
            raise ValueError(f"{path}: no 'url' column (columns: {sorted(pf.schema_arrow.names)})")
        return pf.metadata.num_rows
    return sum(1 for _ in _read_jsonl(path))


def read_rows(path: str | os.PathLike[str]) -> Iterator[InputRow]:
    """Rows in input order; a missing ``key`` becomes the row index, a missing ``caption`` None."""
    path = Path(path)
    if _is_parquet(path):
        yield from _read_parquet(path)
    else:
        yield from _read_jsonl(path)


def _read_parquet(path: Path) -> Iterator[InputRow]:
    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    if "url" not in names:
        raise ValueError(f"{path}: no 'url' column (columns: {sorted(names)})")
    columns = [c for c in ("url", "key", "caption") if c in names]
    index = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        cols = {name: batch.column(name).to_pylist() for name in columns}
        for i in range(batch.num_rows):
            key = cols["key"][i] if "key" in cols else None
            yield InputRow(
                index,
                str(index) if key is None else str(key),
                _text(cols["url"][i]),
                _text(cols["caption"][i]) if "caption" in cols else None,
            )
            index += 1


def _read_jsonl(path: Path) -> Iterator[InputRow]:
    index = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "url" not in record:
                raise ValueError(f"{path}:{lineno}: expected an object with a 'url' field")
            key = record.get("key")
            yield InputRow(index, str(index) if key is None else str(key), _text(record["url"]), _text(record.get("caption")))
            index += 1
