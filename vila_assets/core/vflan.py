"""VFLAN (FLAN 1M + M3IT) as VILA reads it: record shape, per-file outputs, and the shuffle into chunks
under either data policy.

What VILA did (``data_prepare/sft/split_vflan.py``): load every ``*.pkl`` of ``new-vflan`` sorted by name
into one list, ``random.seed(1); random.shuffle``, cut ``per = N // 128`` records per part while at least
``per`` remain (``N // per`` parts: 128 from N = 16,384 up, more below), drop the remaining ``N % per``,
and loop forever when N < 128.

* **Per-file outputs.** ``flan_1m`` and ``m3it_tasks`` write each source file twice through one
  :class:`SourceFileWriter`: the VILA pickle ``<stem>.pkl`` (in the directory the family's layout names
  after VILA's ``new-vflan``, which its split script read) and a row-addressable Parquet copy
  ``<stem>.parquet`` plus a ``<stem>.json`` sidecar (rows, sha256 of the pickle). Both are streamed:
  memory never holds a file. They are *not* put under ``playground/data``: VILA v1/1.5 only registers the
  sharded directory, HEAD's per-file registry entries are not public, and a copy would double storage.
* **Plan.** Where every record goes is computed from row counts alone (no data read) and stored as a
  small Parquet index (:class:`ShufflePlan`):

  - ``vila`` (:func:`make_vila_shuffle_plan`): the permutation ``random.seed(seed); random.shuffle``
    makes of the name-sorted concatenation (a shuffle's swaps depend only on the list's length, so
    shuffling ``range(N)`` gives it), VILA's part sizes, the remainder dropped and reported. Parts beyond
    ``part-00127`` (N < 16,384) belong to the last partition (:func:`chunks_for_partitions`).
  - ``curated`` (:func:`make_shuffle_plan`): a record's identity is ``(source stem, row)``; its sort key
    a seeded 64-bit hash of it (:func:`row_hashes`, integer arithmetic only), so the order depends on
    neither the order of the sources nor a library version. The 128 chunk sizes come from
    ``train_layout.balanced_sizes`` for the training world size: every record usable; where the total
    does not divide, the first records are repeated at the end and the count is reported.
* **Chunks.** A run for a set of chunks scans the sources once, spills each chunk's records to a temporary
  file, then sorts and writes each chunk with ``write_pickle_shard``: memory is one chunk plus one Parquet
  batch, whatever the total.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from vila_assets.core.atomic import atomic_path
from vila_assets.core.policy import Difference, Policy, as_policy
from vila_assets.core.train_layout import balanced_sizes, padding_indices
from vila_assets.core.vila_format import PickleListWriter, write_json, write_pickle_shard

N_CHUNKS = 128
FLAN_STEM = "text_flan_1m"

POLICY_DIFFERENCES = (
    Difference(
        "VFLAN", "shuffle",
        "`random.seed(1); random.shuffle` of the name-sorted concatenation of the 15 pickles, all in memory",
        "same permutation, computed from row counts; records streamed",
        "seeded hash of (source, row): independent of source order and of Python's `random`"),
    Difference(
        "VFLAN", "parts",
        "`per = N // 128` records per part, `N // per` parts (more than 128 below N = 16,384), the last "
        "`N % per` records dropped; never finishes when N < 128",
        "same parts (those beyond part-00127 are written by partition 00127's run); the dropped count "
        "is reported; N < 128 is an error",
        "128 chunks laid out for `train_world_size` (`balanced_sizes`): nothing dropped, the shortfall "
        "filled by repeating the first records (count reported)"),
    Difference(
        "VFLAN", "record keys", "as in the per-file pickles", "same",
        "same; every record carries an `id`"),
)

# The Parquet copy of every per-file output (FLAN and M3IT share it, so chunks read one schema).
RECORD_SCHEMA = pa.schema(
    [
        ("question", pa.large_string()),
        ("answer", pa.large_string()),
        ("id", pa.large_string()),
        ("image", pa.list_(pa.large_string())),
    ]
)


# --- record shape ----------------------------------------------------------------------------------


def make_record(question: str, answer: str, rec_id: str | None, image: list[str]) -> dict[str, Any]:
    """A VFLAN record; key order fixed so pickles are byte-stable. VILA reads question/answer/image.

    ``rec_id`` None: no ``id`` key, as VILA's M3IT records (``{question, answer, image}``)."""
    if rec_id is None:
        return {"question": question, "answer": answer, "image": image}
    return {"question": question, "answer": answer, "id": rec_id, "image": image}


def record_problems(rec: Any, *, where: str) -> list[str]:
    """Why VILA's ``LazyVFlanDataset`` would choke on ``rec`` (empty list: it is fine)."""
    if not isinstance(rec, dict):
        return [f"{where}: record is {type(rec).__name__}, not a dict"]
    problems = []
    for key in ("question", "answer"):
        if not isinstance(rec.get(key), str):
            problems.append(f"{where}: {key!r} is {type(rec.get(key)).__name__}, not str")
    image = rec.get("image")
    if not isinstance(image, list) or not all(isinstance(i, str) for i in image):
        problems.append(f"{where}: 'image' must be a list of base64 strings")
    elif len(image) > 8:
        problems.append(f"{where}: {len(image)} images; VILA reads at most 8")
    if not problems and "Image Descriptions" in rec["question"]:
        try:
            loader_turns(rec)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def loader_turns(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """The (human, gpt) turns VILA v1/1.5's ``LazyVFlanDataset`` builds from a record.

    ``<image>`` tokens are removed and one ``"<image>\\n"`` per image is prepended. A question that
    contains "Image Descriptions" (M3IT visual-dialog) is split on ``"\\nQuestion: "`` / ``"\\nAnswer: "``
    into a multi-turn dialogue whose last question is answered by ``answer`` (VILA asserts that last
    question has no inline answer; we raise ``ValueError`` there instead).
    """
    question = rec["question"].rstrip()
    answer = rec["answer:"] if "answer:" in rec else rec["answer"]
    images = rec["image:"] if "image:" in rec else rec["image"]
    if isinstance(images, str):
        images = [images]
    question = "<image>\n" * len(images) + question.replace("<image>", "")
    if "Image Descriptions" not in question:
        return [(question, answer)]
    pairs = [qa.split("\nAnswer: ") for qa in question.split("\nQuestion: ")[1:]]
    if not pairs:
        raise ValueError("'Image Descriptions' dialogue without any '\\nQuestion: '")
    if len(pairs[-1]) != 1:
        raise ValueError("dialogue's last question already has an '\\nAnswer: '")
    if any(len(p) != 2 for p in pairs[:-1]):
        raise ValueError("a dialogue turn has no (or several) '\\nAnswer: '")
    pairs[0][0] = "<image>\n" + pairs[0][0]
    pairs[-1][0] = pairs[-1][0].replace("\n", "")
    pairs[-1].append(answer)
    return [(q, a) for q, a in pairs]


# --- per-file outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    """One per-file output as recorded in its sidecar: stem, row count and the pickle's sha256."""

    stem: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class PerFileLayout:
    """Where per-file outputs live: ``pickle_dir/<stem>.pkl``, ``parquet_dir/<stem>.parquet`` + ``.json``."""

    pickle_dir: Path
    parquet_dir: Path

    def pickle(self, stem: str) -> Path:
        return Path(self.pickle_dir) / f"{stem}.pkl"

    def parquet(self, stem: str) -> Path:
        return Path(self.parquet_dir) / f"{stem}.parquet"

    def sidecar(self, stem: str) -> Path:
        return Path(self.parquet_dir) / f"{stem}.json"

    def read_info(self, stem: str) -> SourceInfo:
        path = self.sidecar(stem)
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; materialize the asset that writes {stem!r} first")
        try:
            info = json.loads(path.read_text())
            rows = pq.ParquetFile(self.parquet(stem)).metadata.num_rows
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise ValueError(f"{path} / {self.parquet(stem)}: unreadable ({exc}); rematerialize {stem!r}") from exc
        if rows != info["rows"]:
            raise ValueError(f"{self.parquet(stem)} holds {rows} rows but {path} says {info['rows']}")
        return SourceInfo(info["stem"], info["rows"], info["sha256"])


class SourceFileWriter:
    """``with SourceFileWriter(layout, stem) as w: w.write(rec)...`` writes pickle + Parquet + sidecar.

    All three appear atomically when the block exits cleanly; on error none of them changes.
    """

    def __init__(self, layout: PerFileLayout, stem: str, row_group_size: int = 50_000, batch_rows: int = 1024):
        self.layout, self.stem = layout, stem
        self._row_group_size, self._batch_rows = row_group_size, batch_rows
        self._stack = contextlib.ExitStack()
        self._batch: list[dict] = []
        self.info: SourceInfo | None = None

    def __enter__(self) -> "SourceFileWriter":
        stack = self._stack
        pkl_tmp = stack.enter_context(atomic_path(self.layout.pickle(self.stem)))
        pq_tmp = stack.enter_context(atomic_path(self.layout.parquet(self.stem)))
        self._pkl_fh = stack.enter_context(open(pkl_tmp, "wb"))
        self._pickle = PickleListWriter(self._pkl_fh)
        self._pq = stack.enter_context(pq.ParquetWriter(pq_tmp, RECORD_SCHEMA, compression="zstd"))
        return self

    def write(self, rec: dict[str, Any]) -> None:
        self._pickle.append(rec)
        self._batch.append(rec)
        if len(self._batch) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            table = pa.Table.from_pylist(self._batch, schema=RECORD_SCHEMA)
            self._pq.write_table(table, row_group_size=self._row_group_size)
            self._batch = []

    @property
    def count(self) -> int:
        return self._pickle.count

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._flush()
            sha = self._pickle.close()
            self.info = SourceInfo(self.stem, self._pickle.count, sha)
        self._stack.__exit__(exc_type, exc, tb)  # closes files, renames (or removes on error)
        if exc_type is None:
            write_json(self.layout.sidecar(self.stem), {"stem": self.stem, "rows": self.info.rows, "sha256": sha})


# --- seeded hashing of stable identities -------------------------------------------------------------

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def name_key(seed: int, name: str) -> int:
    """A 64-bit key for (seed, name): blake2b, so it is the same on every platform and version."""
    digest = hashlib.blake2b(f"{seed}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def row_hashes(seed: int, name: str, start: int, count: int) -> np.ndarray:
    """Seeded 64-bit hashes of rows ``start .. start+count-1`` of ``name``.

    SplitMix64's output function applied to ``key(seed, name) + (row + 1) * golden``: pure uint64
    arithmetic (wrapping), distinct for distinct rows of one name, stable across library versions.
    """
    rows = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(name_key(seed, name)) + rows * _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def natural_key(path: str) -> tuple:
    """Sort key that orders ``part.2`` before ``part.10`` (VILA's lexicographic order does not)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path))


# --- the shuffle plan ---------------------------------------------------------------------------------


@dataclass
class ShufflePlan:
    """Where every record of every source goes.

    ``positions[i]`` holds, for source ``sources[i]``, each row's position in the shuffled sequence
    (0 .. total-1). Chunk ``c`` holds positions ``bounds[c] .. bounds[c+1]-1``. Positions at or past
    ``bounds[-1]`` are in no chunk (vila: the dropped remainder). Curated plans may run past ``total``:
    position ``total + i`` repeats the record at position ``padding_indices(total, padded)[i]``.
    """

    seed: int
    policy: str
    sources: list[SourceInfo]
    positions: list[np.ndarray]
    sizes: list[int] = field(default_factory=list)
    padded: int = 0
    world_size: int = 1  # the training world size the sizes were laid out for (curated)

    @property
    def n_chunks(self) -> int:
        return len(self.sizes)

    @property
    def total(self) -> int:
        """Distinct records in the sources."""
        return sum(s.rows for s in self.sources)

    @property
    def in_chunks(self) -> int:
        return sum(self.sizes)

    @property
    def dropped(self) -> int:
        """Records in no chunk (vila: VILA's ``N % per`` remainder)."""
        return self.total + self.padded - self.in_chunks

    @property
    def bounds(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])

    @property
    def fingerprint(self) -> str:
        """Changes whenever any source's content, the policy, the seed or the chunk layout changes."""
        h = hashlib.sha256(f"{self.policy}:{self.seed}:{self.padded}:{self.sizes}".encode())
        for s in self.sources:
            h.update(f"|{s.stem}:{s.rows}:{s.sha256}".encode())
        return h.hexdigest()[:16]

    def chunk_of(self, positions: np.ndarray) -> np.ndarray:
        """The chunk of each position; -1 for a position in no chunk."""
        chunk = np.searchsorted(self.bounds, positions, side="right") - 1
        return np.where(np.asarray(positions) < self.in_chunks, chunk, -1)

    def padding_of(self) -> dict[int, list[int]]:
        """Position of a record -> the padding positions that repeat it."""
        out: dict[int, list[int]] = {}
        for i, pos in enumerate(padding_indices(self.total, self.padded)):
            out.setdefault(pos, []).append(self.total + i)
        return out

    def to_table(self) -> pa.Table:
        """The plan as a small index, by position: source, row, position, chunk (-1: dropped), padding."""
        stems = np.concatenate([np.full(len(p), i, dtype=np.int32) for i, p in enumerate(self.positions)] or [[]])
        rows = np.concatenate([np.arange(len(p), dtype=np.int64) for p in self.positions] or [[]])
        pos = np.concatenate(self.positions or [np.empty(0, np.int64)]).astype(np.int64)
        extra = sorted((repeat, original) for original, repeats in self.padding_of().items() for repeat in repeats)
        if extra:
            record_at = np.argsort(pos, kind="stable")  # positions are a permutation: position -> record
            src_of = record_at[[original for _, original in extra]]
            stems = np.concatenate([stems, stems[src_of]])
            rows = np.concatenate([rows, rows[src_of]])
            pos = np.concatenate([pos, np.array([repeat for repeat, _ in extra], np.int64)])
        order = np.argsort(pos, kind="stable")
        names = pa.array([s.stem for s in self.sources], pa.string())
        return pa.table({
            "source": pa.DictionaryArray.from_arrays(pa.array(stems[order].astype(np.int32)), names),
            "row": pa.array(rows[order].astype(np.int64)),
            "position": pa.array(pos[order]),
            "chunk": pa.array(self.chunk_of(pos[order]).astype(np.int32)),
            "padding": pa.array(pos[order] >= self.total),
        })


def _concat_index(sources: Sequence[SourceInfo]) -> tuple[np.ndarray, np.ndarray]:
    src = np.concatenate([np.full(s.rows, i, dtype=np.int32) for i, s in enumerate(sources)] or [np.empty(0, np.int32)])
    row = np.concatenate([np.arange(s.rows, dtype=np.int64) for s in sources] or [np.empty(0, np.int64)])
    return src, row


def _split_positions(sources: Sequence[SourceInfo], position: np.ndarray) -> list[np.ndarray]:
    splits = np.cumsum([s.rows for s in sources])[:-1] if sources else []
    return list(np.split(position, splits)) if sources else []


def _unique_stems(sources: Sequence[SourceInfo]) -> None:
    if len({s.stem for s in sources}) != len(sources):
        raise ValueError(f"duplicate source stems in {[s.stem for s in sources]}")


def make_shuffle_plan(sources: Sequence[SourceInfo], seed: int, n_chunks: int = N_CHUNKS,
                      world_size: int = 1) -> ShufflePlan:
    """Curated: seeded permutation of all records (identity = stem + row), independent of the order of
    ``sources``, in ``n_chunks`` chunks laid out so every record is usable at ``world_size``."""
    sources = sorted(sources, key=lambda s: s.stem)
    _unique_stems(sources)
    h = np.concatenate([row_hashes(seed, s.stem, 0, s.rows) for s in sources] or [np.empty(0, np.uint64)])
    src, row = _concat_index(sources)
    order = np.lexsort((row, src, h))  # by hash, then stem, then row: a total order
    position = np.empty(len(h), dtype=np.int64)
    position[order] = np.arange(len(h), dtype=np.int64)
    layout = balanced_sizes(len(h), n_chunks, world_size)
    return ShufflePlan(seed, Policy.curated.value, list(sources), _split_positions(sources, position),
                       list(layout.sizes), layout.padded, world_size)


def vila_part_sizes(n: int, n_parts: int = N_CHUNKS) -> list[int]:
    """``split_vflan.py``'s parts: ``per = n // 128`` records each while ``per`` remain, the rest dropped."""
    per = n // n_parts
    if per == 0:
        raise ValueError(f"{n} records: VILA's split_vflan.py cuts n // {n_parts} = 0 records per part and never "
                         f"finishes; the vila policy needs at least {n_parts} records")
    return [per] * (n // per)


def make_vila_shuffle_plan(sources: Sequence[SourceInfo], seed: int = 1, n_chunks: int = N_CHUNKS) -> ShufflePlan:
    """Vila: ``split_vflan.py``'s order and parts. Sources are concatenated in file-name order
    (``<stem>.pkl``, so ``text_flan_1m.pkl`` sorts among the M3IT files), then ``random.seed(seed);
    random.shuffle``: ``shuffled[p] = concatenated[perm[p]]``."""
    sources = sorted(sources, key=lambda s: f"{s.stem}.pkl")
    _unique_stems(sources)
    n = sum(s.rows for s in sources)
    sizes = vila_part_sizes(n, n_chunks)
    perm = list(range(n))
    random.Random(seed).shuffle(perm)  # the module-level random.seed + random.shuffle draw the same
    position = np.empty(n, dtype=np.int64)
    position[np.asarray(perm, dtype=np.int64)] = np.arange(n, dtype=np.int64)
    del perm
    return ShufflePlan(seed, Policy.vila.value, list(sources), _split_positions(sources, position), sizes)


def plan_for(policy: Policy | str, sources: Sequence[SourceInfo], seed: int, world_size: int) -> ShufflePlan:
    """The plan a policy makes (``world_size`` shapes only the curated layout)."""
    if as_policy(policy) is Policy.vila:
        return make_vila_shuffle_plan(sources, seed)
    return make_shuffle_plan(sources, seed, N_CHUNKS, world_size)


def chunk_stem(chunk: int) -> str:
    return f"part-{chunk:05d}"


def chunks_for_partitions(plan: ShufflePlan, partitions: Iterable[int], n_partitions: int = N_CHUNKS) -> list[int]:
    """The chunks a run over these partitions writes: one each, and the last partition also owns every
    part past it (vila plans for N < 16,384 have more than 128 parts)."""
    wanted = set()
    for p in partitions:
        if not 0 <= p < n_partitions:
            raise ValueError(f"partition {p} outside 0..{n_partitions - 1}")
        wanted.add(p)
        if p == n_partitions - 1:
            wanted.update(range(n_partitions, plan.n_chunks))
    return sorted(c for c in wanted if c < plan.n_chunks)


def partition_of(chunk: int, n_partitions: int = N_CHUNKS) -> int:
    return min(chunk, n_partitions - 1)


def stale_chunk_files(directory: str | os.PathLike[str], plan: ShufflePlan) -> list[Path]:
    """``part-NNNNN.{pkl,count}`` files in ``directory`` past the plan's last part (a previous plan's)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = re.compile(r"part-(\d{5,})\.(pkl|count)")
    return sorted(p for p in directory.iterdir()
                  if (m := pattern.fullmatch(p.name)) and int(m.group(1)) >= plan.n_chunks)


# --- building chunks ------------------------------------------------------------------------------------


@dataclass
class ChunkResult:
    chunk: int
    count: int
    pkl: Path
    sources: dict[str, int]
    images: int
    problems: list[str]
    n_problems: int


def _iter_batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    try:
        pf = pq.ParquetFile(path)
        yield from pf.iter_batches(batch_size=batch_rows, columns=RECORD_SCHEMA.names)
    except (OSError, pa.ArrowException) as exc:  # truncated, empty or damaged: name the file
        raise ValueError(f"{path}: unreadable Parquet copy ({exc}); rematerialize the asset that writes it") from exc


def _pair_hash(*parts: str) -> int:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "little", signed=True)


def chunk_manifest_path(manifest_dir: Path, chunk: int) -> Path:
    return Path(manifest_dir) / f"{chunk_stem(chunk)}.parquet"


def _wanted_chunks(plan: ShufflePlan, chunks: Iterable[int]) -> list[int]:
    wanted = sorted(set(int(c) for c in chunks))
    for c in wanted:
        if not 0 <= c < plan.n_chunks:
            raise ValueError(f"chunk {c} outside 0..{plan.n_chunks - 1}")
    return wanted


def spill_path(work_dir: str | os.PathLike[str], chunk: int) -> Path:
    return Path(work_dir) / f"{chunk_stem(chunk)}.spill"


def _spill_source(plan: ShufflePlan, src_idx: int, path: Path, wanted_mask: np.ndarray, spills: dict,
                  padding: dict[int, list[int]], batch_rows: int) -> None:
    """Append every row of source ``src_idx`` bound for a wanted chunk to that chunk's spill file (a row
    repeated as padding goes there once more, at its padding position)."""
    source, positions = plan.sources[src_idx], plan.positions[src_idx]
    repeated = np.fromiter(padding, dtype=np.int64, count=len(padding))
    offset = 0
    for batch in _iter_batches(path, batch_rows):
        n = batch.num_rows
        pos = positions[offset : offset + n]
        if len(pos) != n:
            raise ValueError(f"{path}: more rows than the plan's {source.rows}; rerun the plan")
        chunk = plan.chunk_of(pos)
        bound = chunk >= 0
        bound[bound] = wanted_mask[chunk[bound]]
        keep = [(int(i), int(pos[i]), int(chunk[i])) for i in np.nonzero(bound)[0]]
        for i in np.nonzero(np.isin(pos, repeated))[0]:
            for p in padding[int(pos[i])]:
                c = int(plan.chunk_of(np.array([p]))[0])
                if c >= 0 and wanted_mask[c]:
                    keep.append((int(i), p, c))
        if keep:
            take = sorted({i for i, _, _ in keep})
            recs = dict(zip(take, batch.take(pa.array(take)).to_pylist()))
            for i, p, c in keep:
                # scratch, read back by _read_spill only: one pickle per entry, not a VILA list
                pickle.dump((p, src_idx, offset + i, recs[i]), spills[c], protocol=4)
        offset += n
    if offset != source.rows:
        raise ValueError(f"{path}: {offset} rows but the plan expects {source.rows}")


def spill_pass(plan: ShufflePlan, layout: PerFileLayout, wanted: list[int], work_dir: str | os.PathLike[str],
               batch_rows: int = 256) -> None:
    """Pass 1: one scan over every source; each row bound for a wanted chunk goes to that chunk's spill
    file. Raises if a source no longer matches the plan."""
    wanted_mask = np.zeros(plan.n_chunks, dtype=bool)
    wanted_mask[wanted] = True
    padding = plan.padding_of()
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        spills = {c: stack.enter_context(open(spill_path(work_dir, c), "wb", buffering=256 << 10)) for c in wanted}
        for src_idx, source in enumerate(plan.sources):
            _spill_source(plan, src_idx, layout.parquet(source.stem), wanted_mask, spills, padding, batch_rows)


def _read_spill(plan: ShufflePlan, chunk: int, work_dir: str | os.PathLike[str]) -> list[tuple]:
    """A chunk's spilled entries in position order (the spill file is removed); checked against the plan."""
    entries = []
    spill = spill_path(work_dir, chunk)
    with open(spill, "rb") as fh:
        while True:
            try:
                entries.append(pickle.load(fh))
            except EOFError:
                break
    spill.unlink()
    entries.sort(key=lambda e: e[0])
    bounds = plan.bounds
    if [e[0] for e in entries] != list(range(int(bounds[chunk]), int(bounds[chunk + 1]))):
        raise ValueError(f"chunk {chunk}: got {len(entries)} records, plan says {int(bounds[chunk + 1] - bounds[chunk])}")
    return entries


def _chunk_manifest(plan: ShufflePlan, entries: list[tuple], records: list[dict]) -> pa.Table:
    """Position, source, row, id and content hashes per record: what the duplicate report reads."""
    table = pa.table(
        {
            "position": pa.array([e[0] for e in entries], pa.int64()),
            "source": pa.array([plan.sources[e[1]].stem for e in entries], pa.string()),
            "row": pa.array([e[2] for e in entries], pa.int64()),
            "id": pa.array([r.get("id") for r in records], pa.string()),  # vila M3IT records have none
            "qa_hash": pa.array([_pair_hash(r["question"], r["answer"]) for r in records], pa.int64()),
            "record_hash": pa.array([_pair_hash(r["question"], r["answer"], *r["image"]) for r in records], pa.int64()),
            "n_images": pa.array([len(r["image"]) for r in records], pa.int32()),
            "padding": pa.array([e[0] >= plan.total for e in entries], pa.bool_()),
        }
    )
    return table.replace_schema_metadata({"plan_fingerprint": plan.fingerprint})


def write_chunk(plan: ShufflePlan, chunk: int, entries: list[tuple], out_dir: str | os.PathLike[str],
                manifest_dir: str | os.PathLike[str], max_problems: int = 20) -> ChunkResult:
    """Pass 2, one chunk: its records (in position order) as ``part-%05d.pkl`` + ``.count``, its manifest,
    and what VILA's loader would choke on (``record_problems``)."""
    records = [make_record(r["question"], r["answer"], r["id"], list(r["image"])) for _, _, _, r in entries]
    problems: list[str] = []
    n_problems = 0
    by_source: dict[str, int] = {}
    for (_, si, row, _), rec in zip(entries, records):
        stem = plan.sources[si].stem
        by_source[stem] = by_source.get(stem, 0) + 1
        found = record_problems(rec, where=f"{stem} row {row}" + (f" (id {rec['id']!r})" if "id" in rec else ""))
        n_problems += len(found)
        problems.extend(found[: max(0, max_problems - len(problems))])
    pkl = write_pickle_shard(out_dir, chunk_stem(chunk), records)
    with atomic_path(chunk_manifest_path(Path(manifest_dir), chunk)) as tmp:
        pq.write_table(_chunk_manifest(plan, entries, records), tmp)
    images = sum(len(r["image"]) for r in records)
    return ChunkResult(chunk, len(records), pkl, by_source, images, problems, n_problems)


def build_chunks(
    plan: ShufflePlan,
    layout: PerFileLayout,
    chunks: Iterable[int],
    out_dir: str | os.PathLike[str],
    manifest_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    batch_rows: int = 256,
    max_problems: int = 20,
) -> list[ChunkResult]:
    """Write ``part-%05d.pkl`` + ``.count`` for each of ``chunks`` into ``out_dir``, in plan order.

    Pass 1 (:func:`spill_pass`) scans every source once and spills the rows bound for the requested
    chunks to ``work_dir``; pass 2 (:func:`write_chunk`) reads each chunk back, orders it by position and
    writes it, with a small per-chunk manifest (position, source, row, id, hashes of (question, answer)
    and of the whole record) in ``manifest_dir`` for the duplicate report. Memory: one chunk.
    """
    wanted = _wanted_chunks(plan, chunks)
    spill_pass(plan, layout, wanted, work_dir, batch_rows)
    return [
        write_chunk(plan, c, _read_spill(plan, c, work_dir), out_dir, manifest_dir, max_problems) for c in wanted
    ]


@dataclass(frozen=True)
class DuplicateReport:
    records: int
    duplicate_pairs: int  # records whose (question, answer) appeared earlier in position order
    duplicate_records: int  # records identical (question, answer, images) to an earlier one
    chunks_read: int
    by_source: dict[str, int]  # duplicate (question, answer) pairs per source


def duplicate_report(manifest_dir: str | os.PathLike[str], chunks: Iterable[int]) -> DuplicateReport:
    """Identical (question, answer) pairs and identical records across the given chunks' manifests
    (padding repeats of the curated layout excluded)."""
    tables = []
    for c in chunks:
        path = chunk_manifest_path(Path(manifest_dir), c)
        if path.exists():
            t = pq.read_table(path)
            if "padding" in t.column_names:  # repeated on purpose (curated layout), not a duplicate
                t = t.filter(pa.compute.invert(t.column("padding")))
            tables.append(t.select(["position", "source", "qa_hash", "record_hash"]))
    if not tables:
        return DuplicateReport(0, 0, 0, 0, {})
    t = pa.concat_tables(tables).sort_by("position")
    qa = t.column("qa_hash").to_numpy()
    rec = t.column("record_hash").to_numpy()

    def repeats(values: np.ndarray) -> np.ndarray:
        _, first = np.unique(values, return_index=True)
        dup = np.ones(len(values), dtype=bool)
        dup[first] = False
        return dup

    dup_qa = repeats(qa)
    by_source: dict[str, int] = {}
    for stem in np.asarray(t.column("source").to_pylist(), dtype=object)[dup_qa]:
        by_source[stem] = by_source.get(stem, 0) + 1
    return DuplicateReport(len(qa), int(dup_qa.sum()), int(repeats(rec).sum()), len(tables), dict(sorted(by_source.items())))


def chunk_fingerprints(manifest_dir: str | os.PathLike[str], chunks: Iterable[int]) -> dict[int, str | None]:
    """The plan fingerprint each chunk was built with (None: no manifest, i.e. never built)."""
    out: dict[int, str | None] = {}
    for c in chunks:
        path = chunk_manifest_path(Path(manifest_dir), c)
        meta = pq.read_schema(path).metadata if path.exists() else None
        out[c] = meta.get(b"plan_fingerprint", b"").decode() if meta else None
    return out


def write_plan_index(plan: ShufflePlan, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        pq.write_table(plan.to_table(), tmp, compression="zstd")
    return Path(path)
