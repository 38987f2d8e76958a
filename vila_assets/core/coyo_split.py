"""COYO split: every shard's kept records cut into ``part-%05d.pkl`` + ``.count`` (VILA's ``coyo_splitter.py``),
Dagster-free. The data policy decides the part sizes (:func:`plan_split`):

- ``vila``: consecutive parts of exactly ``samples_per_part`` (12,440 in VILA); the final partial part is
  dropped, as VILA drops it, and the loss is reported;
- ``curated``: parts of at most ``samples_per_part`` laid out for the training world size with
  ``core.train_layout.balanced_sizes`` (``LazyCoyoDataset`` packs 4 samples per index), so every record is
  usable; where the count does not divide, the first records are repeated at the end and counted.

Under both, records come in shard order, then selection rank (VILA's order was download completion), and
only one record at a time is held in memory.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path
from vila_assets.core.coyo import read_parquet_table
from vila_assets.core.coyo_rescore import iter_kept_records
from vila_assets.core.policy import Policy, as_policy
from vila_assets.core.train_layout import balanced_sizes
from vila_assets.core.vila_format import decode_base64_image, loader_shards, validate_shard_dir, write_pickle_shard

VILA_SAMPLES_PER_PART = 12_440
SAMPLES_PER_INDEX = 4  # LazyCoyoDataset: n_samples_per_idx
_PART = re.compile(r"^part-(\d{5})\.(pkl|count)$")
# Temp files atomic writes leave behind after a crash (see core.atomic): ".part-00003.pkl.tmp-xxxx".
_OUR_TEMP = re.compile(r"^\.part-\d{5}\.(pkl|count)\.tmp-")

SPLIT_MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("part", pa.int32()),  # null: dropped with VILA's final partial part
        pa.field("index", pa.int32()),  # position inside the part
        pa.field("shard", pa.string(), nullable=False),
        pa.field("id", pa.int64(), nullable=False),
        pa.field("repeat", pa.bool_(), nullable=False),  # a padding copy of an earlier record (curated)
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


def kept_counts(shards: Sequence[ShardOutput]) -> dict[str, int]:
    """Kept records per shard, from the manifests alone (no image is read)."""
    return {s.key: sum(read_parquet_table(s.manifest, ["kept"]).column("kept").to_pylist()) for s in shards}


# --------------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class SplitPlan:
    """Part sizes for ``records`` kept records, and what the layout loses or repeats."""

    policy: str
    sizes: tuple[int, ...]
    records: int
    samples_per_part: int
    world_size: int | None = None  # curated: the world size the layout is for
    dropped: int = 0  # vila: the final partial part, not written
    padded: int = 0  # curated: records repeated at the end so every rank gets the same whole indices

    @property
    def total(self) -> int:
        return sum(self.sizes)


def vila_plan(n: int, samples_per_part: int = VILA_SAMPLES_PER_PART) -> SplitPlan:
    """coyo_splitter: ``n // samples_per_part`` parts of exactly ``samples_per_part``; the rest dropped."""
    full, rest = divmod(n, samples_per_part)
    return SplitPlan(Policy.vila.value, (samples_per_part,) * full, n, samples_per_part, dropped=rest)


def curated_plan(n: int, samples_per_part: int, world_size: int,
                 samples_per_index: int = SAMPLES_PER_INDEX) -> SplitPlan:
    """The fewest parts (a multiple of ``world_size``) of at most ``samples_per_part`` that hold ``n``
    records padded to whole indices on every rank; sizes from ``balanced_sizes``."""
    if n == 0:
        return SplitPlan(Policy.curated.value, (), 0, samples_per_part, world_size)
    unit = world_size * samples_per_index
    padded_total = -(-n // unit) * unit
    parts = -(-padded_total // samples_per_part)
    parts = -(-parts // world_size) * world_size
    layout = balanced_sizes(n, parts, world_size, samples_per_index)
    return SplitPlan(Policy.curated.value, layout.sizes, n, samples_per_part, world_size, padded=layout.padded)


def plan_split(policy: Policy | str, n: int, samples_per_part: int, world_size: int) -> SplitPlan:
    if samples_per_part < 1:
        raise ValueError("samples_per_part must be >= 1")
    if as_policy(policy) is Policy.vila:
        return vila_plan(n, samples_per_part)
    return curated_plan(n, samples_per_part, world_size)


# --------------------------------------------------------------------------------------------- split


@dataclass
class SplitSummary:
    plan: SplitPlan
    shards: list[str]
    records_per_shard: dict[str, int]
    removed_stale: list[str] = field(default_factory=list)

    @property
    def parts(self) -> int:
        return len(self.plan.sizes)

    @property
    def part_sizes(self) -> list[int]:
        return list(self.plan.sizes)

    @property
    def total(self) -> int:
        return self.plan.total


def _records(shards: Sequence[ShardOutput]) -> Iterator[tuple[str, dict]]:
    for shard in shards:
        for rec in iter_kept_records(shard.manifest, shard.samples):
            yield shard.key, rec


def _stream(shards: Sequence[ShardOutput], plan: SplitPlan) -> Iterator[tuple[str, dict, bool]]:
    """Every kept record once, then (curated) ``plan.padded`` repeats from the start, cycling if needed
    (``train_layout.padding_indices``)."""
    for key, rec in _records(shards):
        yield key, rec, False
    left = plan.padded
    while left > 0 and plan.records:
        for key, rec in _records(shards):
            if left == 0:
                return
            yield key, rec, True
            left -= 1


class _ManifestRows:
    """The split manifest, written as parts finish (one row per record; held a part at a time)."""

    def __init__(self, writer: pq.ParquetWriter | None):
        self.writer, self.rows = writer, {name: [] for name in SPLIT_MANIFEST_SCHEMA.names}

    def add(self, part: int | None, index: int | None, shard: str, rec: dict, repeat: bool) -> None:
        if self.writer is not None:
            for name, value in zip(SPLIT_MANIFEST_SCHEMA.names, (part, index, shard, rec["id"], repeat)):
                self.rows[name].append(value)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.write_table(pa.table(self.rows, schema=SPLIT_MANIFEST_SCHEMA))
            self.rows = {name: [] for name in SPLIT_MANIFEST_SCHEMA.names}


def _part_records(stream: Iterator[tuple[str, dict, bool]], part: int, size: int,
                  manifest: _ManifestRows) -> Iterator[dict]:
    for index in range(size):
        try:
            shard, rec, repeat = next(stream)
        except StopIteration:
            raise ValueError(f"records ran out at {part_stem(part)} index {index}; did a manifest change "
                             "during the split?") from None
        manifest.add(part, index, shard, rec, repeat)
        yield rec


def split_shards(
    shards: Sequence[ShardOutput],
    out_dir: str | os.PathLike[str],
    plan: SplitPlan,
    manifest_path: str | os.PathLike[str] | None = None,
) -> SplitSummary:
    """Write ``plan``'s parts for ``shards`` (in the given order) into ``out_dir``; return what was written.

    ``plan.records`` must be the shards' kept count (:func:`kept_counts`). New parts overwrite old ones file
    by file (each write atomic); afterwards every part file of an older, longer split and any temp file of
    ours is removed, so the directory holds exactly the new pairs.
    """
    counts = kept_counts(shards)
    if sum(counts.values()) != plan.records:
        raise ValueError(f"the plan is for {plan.records} records, the shards keep {sum(counts.values())}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stream = _stream(shards, plan)
    with (atomic_path(manifest_path) if manifest_path else nullcontext()) as tmp, \
            (pq.ParquetWriter(tmp, SPLIT_MANIFEST_SCHEMA, compression="zstd") if tmp else nullcontext()) as w:
        manifest = _ManifestRows(w)
        for i, size in enumerate(plan.sizes):
            write_pickle_shard(out_dir, part_stem(i), _part_records(stream, i, size, manifest))
            manifest.flush()
        for shard, rec, _ in stream:  # vila: the dropped tail, listed with no part
            manifest.add(None, None, shard, rec, False)
        manifest.flush()
    removed = _remove_stale(out_dir, len(plan.sizes))
    return SplitSummary(plan, [s.key for s in shards], counts, removed)


def _remove_stale(out_dir: Path, parts: int) -> list[str]:
    keep = {f"{part_stem(i)}.{ext}" for i in range(parts) for ext in ("pkl", "count")}
    removed = []
    for name in sorted(os.listdir(out_dir)):
        if (_PART.match(name) and name not in keep) or _OUR_TEMP.match(name):
            (out_dir / name).unlink()
            removed.append(name)
    return removed


# ------------------------------------------------------------------------------------------ contract


@dataclass
class ContractReport:
    problems: list[str]
    parts: int
    records: int
    decoded: int
    sizes: list[int]


def _size_problems(shards, samples_per_part: int | None, exact: bool) -> list[str]:
    if samples_per_part is None:
        return []
    if exact:
        return [f"{s.pkl}: {s.count} records; every part must hold {samples_per_part}"
                for s in shards if s.count != samples_per_part]
    return [f"{s.pkl}: {s.count} records, more than {samples_per_part}" for s in shards if s.count > samples_per_part]


def _load_part(path: Path) -> tuple[list | None, str | None]:
    """(the part's records, or None and a problem naming the file)."""
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
    except Exception as exc:  # noqa: BLE001 - any unreadable pickle is a contract problem, named
        return None, f"{path}: not a readable pickle ({type(exc).__name__}: {exc})"
    if not isinstance(data, list):
        return None, f"{path}: holds {type(data).__name__}, not list"
    return data, None


def _record_problem(rec: dict, where: str, decode: bool) -> tuple[str | None, bool]:
    """(a problem with one record, or None; whether its image was decoded)."""
    if not isinstance(rec, dict):
        return f"{where}: a {type(rec).__name__}, not a dict", False
    text = rec.get("text", rec.get("caption"))
    if not isinstance(text, str) or not text.strip():
        return f"{where}: no text/caption", False
    image = rec.get("image")
    if image is None and rec.get("rawbytes") is None:
        return f"{where}: no image/rawbytes", False
    if not decode:
        return None, False
    try:
        if image is not None:
            decode_base64_image(image).load()
        else:
            from PIL import Image

            Image.open(BytesIO(rec["rawbytes"])).convert("RGB").load()
    except Exception as exc:  # noqa: BLE001 - any decode failure is a contract problem
        return f"{where}: image does not decode ({type(exc).__name__}: {exc})", False
    return None, True


def check_split_dir(
    directory: str | os.PathLike[str], samples_per_part: int | None = None, decode_per_part: int | None = 32,
    exact: bool = True,
) -> ContractReport:
    """VILA's sharded-pickle contract plus COYO's record contract, as ``LazyCoyoDataset`` reads it.

    Pairs only, ``.count`` = length; every record has a non-empty ``text`` (or ``caption``) and an ``image``
    (or ``rawbytes``); images decode to RGB (the first ``decode_per_part`` of each part; None: all); every
    part holds exactly ``samples_per_part`` (``exact``, vila) or at most that many (curated). Every problem
    names the file (and the record).
    """
    directory = Path(directory)
    problems = validate_shard_dir(directory, check_lengths=False)
    if problems:
        return ContractReport(problems, 0, 0, 0, [])
    shards = loader_shards(directory)
    problems = _size_problems(shards, samples_per_part, exact)
    records = decoded = 0
    for s in shards:
        data, problem = _load_part(s.pkl)
        if problem or len(data) != s.count:
            problems.append(problem or f"{s.pkl}: .count says {s.count} but the pickle holds {len(data)}")
            continue
        for k, rec in enumerate(data):
            records += 1
            decode = decode_per_part is None or k < decode_per_part
            problem, ok = _record_problem(rec, f"{s.pkl} record {k}", decode)
            decoded += ok
            if problem:
                problems.append(problem)
    return ContractReport(problems, len(shards), records, decoded, [s.count for s in shards])
