"""COYO split: every shard's kept records cut into equal-size ``part-%05d.pkl`` + ``.count`` (VILA's
``coyo_splitter.py``, default 12,440 samples per part), Dagster-free.

Unlike VILA, the final short part is written, not dropped, and reported; the order is shard order, then
selection rank (VILA's was download-completion order); and only one part is held in memory at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path
from vila_assets.core.coyo_rescore import iter_kept_records
from vila_assets.core.vila_format import (
    decode_base64_image,
    iter_shard_records,
    loader_shards,
    validate_shard_dir,
    write_pickle_shard,
)

VILA_SAMPLES_PER_PART = 12_440
_PART = re.compile(r"^part-(\d{5})\.(pkl|count)$")
# Temp files atomic writes leave behind after a crash (see core.atomic): ".part-00003.pkl.tmp-xxxx".
_OUR_TEMP = re.compile(r"^\.part-\d{5}\.(pkl|count)\.tmp-")

SPLIT_MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("part", pa.int32(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),  # position inside the part
        pa.field("shard", pa.string(), nullable=False),
        pa.field("id", pa.int64(), nullable=False),
    ]
)


def part_stem(i: int) -> str:
    return f"part-{i:05d}"


@dataclass(frozen=True)
class ShardOutput:
    """Where one shard's kept records are: its manifest (which rows are kept) and the crawl samples (images)."""

    key: str
    manifest: Path
    samples: Path


@dataclass
class SplitSummary:
    total: int
    parts: int
    samples_per_part: int
    part_sizes: list[int]
    remainder: int  # records in the last, short part (0: every part is full)
    shards: list[str]
    records_per_shard: dict[str, int]
    removed_stale: list[str] = field(default_factory=list)

    @property
    def full_parts(self) -> int:
        return self.parts - (1 if self.remainder else 0)


def split_shards(
    shards: Sequence[ShardOutput],
    out_dir: str | os.PathLike[str],
    samples_per_part: int = VILA_SAMPLES_PER_PART,
    manifest_path: str | os.PathLike[str] | None = None,
) -> SplitSummary:
    """Write the parts for ``shards`` (in the given order) into ``out_dir``; return what was written.

    New parts overwrite old ones file by file (each write atomic); afterwards every part file of an older,
    longer split and any temp file of ours is removed, so the directory holds exactly the new pairs.
    """
    if samples_per_part < 1:
        raise ValueError("samples_per_part must be >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer: list[dict] = []
    sizes: list[int] = []
    per_shard: dict[str, int] = {}
    index_rows: dict[str, list] = {"part": [], "index": [], "shard": [], "id": []}

    def flush() -> None:
        write_pickle_shard(out_dir, part_stem(len(sizes)), buffer)
        sizes.append(len(buffer))
        buffer.clear()

    for shard in shards:
        per_shard[shard.key] = 0
        for rec in iter_kept_records(shard.manifest, shard.samples):
            index_rows["part"].append(len(sizes))
            index_rows["index"].append(len(buffer))
            index_rows["shard"].append(shard.key)
            index_rows["id"].append(rec["id"])
            buffer.append(rec)
            per_shard[shard.key] += 1
            if len(buffer) == samples_per_part:
                flush()
    if buffer:
        flush()

    keep = {f"{part_stem(i)}.{ext}" for i in range(len(sizes)) for ext in ("pkl", "count")}
    removed = []
    for name in sorted(os.listdir(out_dir)):
        if (_PART.match(name) and name not in keep) or _OUR_TEMP.match(name):
            (out_dir / name).unlink()
            removed.append(name)
    if manifest_path is not None:
        with atomic_path(manifest_path) as tmp:
            pq.write_table(pa.table(index_rows, schema=SPLIT_MANIFEST_SCHEMA), tmp, compression="zstd")
    total = sum(sizes)
    remainder = sizes[-1] if sizes and sizes[-1] < samples_per_part else 0
    return SplitSummary(total, len(sizes), samples_per_part, sizes, remainder, [s.key for s in shards], per_shard, removed)


@dataclass
class ContractReport:
    problems: list[str]
    parts: int
    records: int
    decoded: int
    sizes: list[int]


def check_split_dir(
    directory: str | os.PathLike[str], samples_per_part: int | None = None, decode_per_part: int | None = 32
) -> ContractReport:
    """VILA's sharded-pickle contract plus COYO's record contract, as ``LazyCoyoDataset`` reads it.

    Pairs only, ``.count`` = length; every record has a non-empty ``text`` (or ``caption``) and an ``image``
    (or ``rawbytes``); images decode to RGB (the first ``decode_per_part`` of each part; None: all); parts
    are all ``samples_per_part`` long except a shorter last one.
    """
    directory = Path(directory)
    problems = validate_shard_dir(directory)
    if problems:
        return ContractReport(problems, 0, 0, 0, [])
    shards = loader_shards(directory)
    sizes = [s.count for s in shards]
    if samples_per_part is not None:
        for s in shards[:-1]:
            if s.count != samples_per_part:
                problems.append(f"{s.pkl}: {s.count} records; every part but the last must hold {samples_per_part}")
        if shards and shards[-1].count > samples_per_part:
            problems.append(f"{shards[-1].pkl}: {shards[-1].count} records, more than {samples_per_part}")
    records = decoded = 0
    seen_in_part: dict[str, int] = {}
    for stem, rec in iter_shard_records(directory):
        k = seen_in_part[stem] = seen_in_part.get(stem, 0) + 1
        records += 1
        where = f"{directory / stem}.pkl record {k - 1}"
        text = rec.get("text", rec.get("caption"))
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: no text/caption")
        image = rec.get("image")
        if image is None and rec.get("rawbytes") is None:
            problems.append(f"{where}: no image/rawbytes")
            continue
        if decode_per_part is None or k <= decode_per_part:
            try:
                if image is not None:
                    img = decode_base64_image(image)
                else:
                    from io import BytesIO

                    from PIL import Image

                    img = Image.open(BytesIO(rec["rawbytes"])).convert("RGB")
                img.load()
                decoded += 1
            except Exception as exc:  # noqa: BLE001 - any decode failure is a contract problem
                problems.append(f"{where}: image does not decode ({type(exc).__name__}: {exc})")
    return ContractReport(problems, len(shards), records, decoded, sizes)
