"""VILA's on-disk contracts, in one place: registry paths, sharded ``.pkl``/``.count`` directories, and
LLaVA-format JSON. Writers and tests both use this module, so the contract cannot drift between them.

The sharded-pickle rules mirror VILA's loaders (``LazyMMC4Dataset``, ``LazyCoyoDataset``,
``LazyVFlanDataset``): the directory holds only ``<stem>.pkl`` + ``<stem>.count`` pairs; ``.count`` is a
decimal integer equal to ``len(pickle.load(<stem>.pkl))``; each pickle is a plain ``list[dict]``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vila_assets.core.atomic import atomic_open, atomic_write_text

# Pickle protocol pinned so reruns on any Python >= 3.8 give the same bytes. 3: native bytes, no framing,
# so records pickled one at a time can be spliced into one list stream (``PickleListWriter``).
PICKLE_PROTOCOL = 3
PLAYGROUND = Path("playground") / "data"


@dataclass(frozen=True)
class RegistryEntry:
    """One VILA dataset registry entry (VILA v1 defaults, paths relative to the VILA repo root)."""

    name: str
    type: str
    data_path: str
    image_path: str | None = None


REGISTRY: dict[str, RegistryEntry] = {
    e.name: e
    for e in (
        RegistryEntry(
            "llava_1_5_align",
            "torch",
            "./playground/data/LLaVA-Pretrain/LLaVA-CC3M-Pretrain-595K.json",
            "./playground/data/LLaVA-Pretrain/images",
        ),
        RegistryEntry("mmc4core", "mmc4", "./playground/data/mmc4-core/pkl-core"),
        RegistryEntry("coyo", "coyo", "./playground/data/coyo-700m/pkl02-split"),
        RegistryEntry(
            "llava_1_5_sft", "torch", "./playground/data/llava_v1_5_mix665k.json", "./playground/data"
        ),
        RegistryEntry(
            "sharegpt4v_sft",
            "torch",
            "./playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json",
            "./playground/data",
        ),
        RegistryEntry("vflan", "vflan", "./playground/data/vlm-flan-clean-text1m-nosqa-sharded"),
    )
}


def registry_path(name: str, root: str | os.PathLike[str]) -> Path:
    """Where registry entry ``name``'s data lives under a data root (``<root>/playground/data/...``)."""
    return Path(root) / REGISTRY[name].data_path.removeprefix("./")


# --- sharded pickle directories -------------------------------------------------------------------


class PickleListWriter:
    """The one VILA pickle writer: ``pickle.load`` returns a plain ``list`` of the appended records, which
    are pickled one at a time, so memory stays bounded by one batch whatever the list's length.

    The stream is what ``pickle.dump(list)`` emits (``]`` then batches of ``( ... e``) with each record
    pickled on its own; a record's memo entries are used only inside that record, so records never refer
    to one another. The bytes are a pure function of the records: reruns are byte-identical.
    """

    def __init__(self, fh, records_per_batch: int = 1000):
        self._fh = fh
        self._per_batch = records_per_batch
        self._sha = hashlib.sha256()
        self._open_batch = False
        self.count = 0
        self._write(pickle.PROTO + bytes([PICKLE_PROTOCOL]) + pickle.EMPTY_LIST)

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._sha.update(data)

    def append(self, rec: Any) -> None:
        if not self._open_batch:
            self._write(pickle.MARK)
            self._open_batch = True
        self._write(pickle.dumps(rec, protocol=PICKLE_PROTOCOL)[2:-1])  # without PROTO and STOP
        self.count += 1
        if self.count % self._per_batch == 0:
            self._write(pickle.APPENDS)
            self._open_batch = False

    def close(self) -> str:
        """Finish the stream; returns the sha256 of everything written."""
        if self._open_batch:
            self._write(pickle.APPENDS)
            self._open_batch = False
        self._write(pickle.STOP)
        return self._sha.hexdigest()


def write_pickled_list(path: str | os.PathLike[str], records: Iterable[Any],
                       tmp_dir: str | os.PathLike[str] | None = None) -> int:
    """Atomically write ``records`` as one pickled list (streamed); returns how many were written.
    ``tmp_dir``: where the temp file grows (see :func:`shard_tmp_dir`), default beside ``path``."""
    with atomic_open(path, "wb", tmp_dir) as fh:
        writer = PickleListWriter(fh)
        for rec in records:
            writer.append(rec)
        writer.close()
    return writer.count


def write_pickle_shard(directory: str | os.PathLike[str], stem: str, records: Iterable[Any]) -> Path:
    """Write ``<stem>.pkl`` and ``<stem>.count`` atomically (records streamed). Returns the ``.pkl`` path.

    Both grow in :func:`shard_tmp_dir`, outside the folder VILA's loader counts, and are renamed in:
    the ``.pkl`` first, then the ``.count`` (an old ``.count`` of another length is removed before the
    new ``.pkl`` goes in). A process killed at any point leaves the folder as it was, or with a finished
    ``.pkl`` not yet counted (the loader only opens counted shards); a rerun completes the pair.
    """
    if not stem or "/" in stem or stem.startswith(".") or "\\" in stem or "\0" in stem:
        raise ValueError(f"bad shard stem {stem!r}")
    directory = Path(directory)
    tmp = shard_tmp_dir(directory)
    count_path = directory / f"{stem}.count"
    with atomic_open(directory / f"{stem}.pkl", "wb", tmp) as fh:
        writer = PickleListWriter(fh)
        for rec in records:
            writer.append(rec)
        writer.close()
        # rewriting a shard with another length: its old .count goes before the new .pkl is renamed in,
        # so a kill in between leaves an uncounted shard, never a count that lies about its .pkl
        if count_path.exists() and count_path.read_text().strip() != str(writer.count):
            count_path.unlink()
    atomic_write_text(count_path, str(writer.count), tmp)
    return directory / f"{stem}.pkl"


def shard_tmp_dir(directory: str | os.PathLike[str]) -> Path:
    """Where a shard folder's files are written before they are renamed in: a hidden sibling folder on
    the same filesystem (``<parent>/.<name>.tmp``), never inside the folder VILA lists."""
    directory = Path(directory)
    return directory.parent / f".{directory.name}.tmp"


def read_count(path: str | os.PathLike[str]) -> int:
    return int(Path(path).read_text().strip())


@dataclass(frozen=True)
class ShardInfo:
    stem: str
    count: int
    pkl: Path


def loader_shards(directory: str | os.PathLike[str]) -> list[ShardInfo]:
    """The shards VILA's loader would see, computed exactly the way it does.

    ``n_shards = len(os.listdir(dir)) // 2``; then the sorted ``*.count`` names truncated to ``n_shards``.
    """
    directory = Path(directory)
    names = os.listdir(directory)
    n_shards = len(names) // 2
    counts = sorted(n for n in names if n.endswith(".count"))[:n_shards]
    return [
        ShardInfo(c[: -len(".count")], read_count(directory / c), directory / (c[: -len(".count")] + ".pkl"))
        for c in counts
    ]


def validate_shard_dir(directory: str | os.PathLike[str], *, check_lengths: bool = True) -> list[str]:
    """Problems that would break or skew VILA's sharded loader; an empty list means the contract holds."""
    directory = Path(directory)
    if not directory.is_dir():
        return [f"{directory}: not a directory"]
    problems: list[str] = []
    names = sorted(os.listdir(directory))
    stems_pkl = {n[:-4] for n in names if n.endswith(".pkl")}
    stems_count = {n[:-6] for n in names if n.endswith(".count")}
    for n in names:
        if not (n.endswith(".pkl") or n.endswith(".count")):
            problems.append(f"{directory / n}: not a .pkl/.count file (skews n_shards = len(listdir)//2)")
    for s in sorted(stems_pkl ^ stems_count):
        problems.append(f"{directory / s}: .pkl and .count are not paired")
    for s in sorted(stems_pkl & stems_count):
        try:
            count = read_count(directory / f"{s}.count")
        except ValueError:
            problems.append(f"{directory / s}.count: not a decimal integer")
            continue
        if check_lengths:
            with open(directory / f"{s}.pkl", "rb") as fh:
                data = pickle.load(fh)
            if not isinstance(data, list):
                problems.append(f"{directory / s}.pkl: holds {type(data).__name__}, not list")
            elif len(data) != count:
                problems.append(f"{directory / s}.count says {count} but the pickle holds {len(data)}")
    return problems


def iter_shard_records(directory: str | os.PathLike[str]) -> Iterator[tuple[str, dict]]:
    """Every record of a sharded directory in loader order, as ``(stem, record)``."""
    for shard in loader_shards(directory):
        with open(shard.pkl, "rb") as fh:
            for rec in pickle.load(fh):
                yield shard.stem, rec


def split_sizes(total: int, n_parts: int) -> list[int]:
    """``n_parts`` sizes summing to ``total``, differing by at most one (remainder spread over the first)."""
    if n_parts <= 0:
        raise ValueError("n_parts must be positive")
    base, extra = divmod(total, n_parts)
    return [base + (1 if i < extra else 0) for i in range(n_parts)]


def fixed_size_parts(total: int, part_size: int) -> list[int]:
    """Consecutive parts of exactly ``part_size``; a shorter last part holds the remainder (never dropped)."""
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    full, rest = divmod(total, part_size)
    return [part_size] * full + ([rest] if rest else [])


# --- images as VILA stores them ------------------------------------------------------------------


def jpeg_to_base64(data: bytes) -> str:
    """VILA keeps images as base64 of JPEG bytes, as ``str``."""
    return base64.b64encode(data).decode("ascii")


def decode_base64_image(s: str):
    """What VILA's loaders do: ``Image.open(BytesIO(b64decode(s))).convert("RGB")``."""
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB")


# --- LLaVA-format JSON -----------------------------------------------------------------------------


def dump_json(obj: Any) -> str:
    """Deterministic JSON text for published files (same input -> same bytes)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    atomic_write_text(path, dump_json(obj))
    return Path(path)


class RecordError(ValueError):
    """A bad input record; the message names the file and the record."""


def validate_conversation_record(rec: Any, *, where: str) -> list[str]:
    """Problems with one LLaVA conversation record (``where`` names file + index for messages)."""
    problems: list[str] = []
    if not isinstance(rec, dict):
        return [f"{where}: record is {type(rec).__name__}, not an object"]
    rid = rec.get("id")
    tag = f"{where} (id {rid!r})"
    if rid is None:
        problems.append(f"{tag}: missing 'id'")
    image = rec.get("image")
    if image is not None and not (
        isinstance(image, str) or (isinstance(image, list) and all(isinstance(i, str) for i in image))
    ):
        problems.append(f"{tag}: 'image' must be a string or a list of strings")
    convs = rec.get("conversations")
    if not isinstance(convs, list) or not convs:
        return problems + [f"{tag}: 'conversations' must be a non-empty list"]
    n_image_tokens = 0
    for i, turn in enumerate(convs):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            problems.append(f"{tag}: turn {i} is not {{from, value: str}}")
            continue
        expected = "human" if i % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            problems.append(f"{tag}: turn {i} is from {turn.get('from')!r}, expected {expected!r}")
        n_image_tokens += turn["value"].count("<image>")
    n_images = 0 if image is None else (1 if isinstance(image, str) else len(image))
    if n_images and n_image_tokens not in (0, n_images):
        # VILA prepends "<image>" when absent, so 0 is fine; any other mismatch is a broken sample.
        problems.append(f"{tag}: {n_image_tokens} <image> tokens for {n_images} image(s)")
    if not n_images and n_image_tokens:
        problems.append(f"{tag}: {n_image_tokens} <image> token(s) but no 'image'")
    return problems + _utf8_problems(rec, tag)


def _utf8_problems(rec: dict, tag: str) -> list[str]:
    """A lone surrogate (JSON allows the escape ``\\ud800``) cannot be written as UTF-8: the record
    would crash the writer of the published file and the tokenizer, so it is refused here."""
    try:
        dump_json(rec).encode("utf-8")
    except UnicodeEncodeError as exc:
        return [f"{tag}: text is not valid UTF-8 (lone surrogate {exc.object[exc.start:exc.end]!r})"]
    except (TypeError, ValueError) as exc:  # not JSON data at all (only possible for records built in code)
        return [f"{tag}: not JSON-serialisable ({exc})"]
    return []
