"""LLaVA-format JSON files (CC3M-595K, mix665k, ShareGPT4V) beyond the contract in ``vila_format``:
streaming read and write of multi-GB JSON arrays, whole-file validation with counts, image-root reports,
conversation fingerprints for dedup, and the view VILA's ``LazySupervisedDataset`` has of a file.

The published files are JSON lists (VILA ``json.load``s them). Reading them record by record keeps memory
flat for mix665k (1 GB) and the ShareGPT4V PT set (1.3 GB); :func:`write_json_array` produces exactly the
bytes of ``vila_format.write_json(path, list(records))`` without holding the list.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vila_assets.core.atomic import atomic_open
from vila_assets.core.policy import Difference
from vila_assets.core.vila_format import RecordError, dump_json, validate_conversation_record

_CHUNK = 1 << 20
_WS = " \t\n\r"

# Image roots as laid out under ./playground/data (LLaVA-1.5 README, ShareGPT4V data/ layout), in the order
# the image-root assets list them. Longest match wins; a path under none of them reports its first two
# components.
KNOWN_IMAGE_ROOTS: tuple[str, ...] = (
    "coco/train2017",
    "gqa/images",
    "ocr_vqa/images",
    "textvqa/train_images",
    "vg/VG_100K",
    "vg/VG_100K_2",
    "sam/images",
    "llava/llava_pretrain/images",
    "wikiart/images",
    "web-celebrity/images",
    "web-landmark/images",
    "share_textvqa/images",
)

# CC3M-595K and mix665k are the same under both data policies (VILA's README only renames and unzips them).
POLICY_DIFFERENCES = (
    Difference(
        "llava", "CC3M-595K records whose image is missing from images.zip or does not decode",
        "kept (`mv chat.json`); VILA's loader fails when it reaches one",
        "left out and listed in the report (`drop_bad_images`); the upstream zip holds none, so the file is "
        "chat.json's bytes",
        "same as `vila`"),
)


class JsonArrayError(ValueError):
    """A file that is not a JSON array of values; the message names the file, element and byte offset."""


def _utf8_cut(raw: bytearray) -> int:
    """Length of the longest prefix of ``raw`` that ends on a UTF-8 sequence boundary: a sequence split by
    the block boundary waits for the next block."""
    for back in range(1, min(4, len(raw)) + 1):
        b = raw[-back]
        if b & 0xC0 == 0x80:  # a continuation byte: look further back for the sequence's lead byte
            continue
        need = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4
        return len(raw) - back if need > back else len(raw)
    return len(raw)


class _TextWindow:
    """The decoded text of an open file, read a chunk at a time. ``buf`` holds the text not yet consumed;
    ``base`` is the character offset of ``buf[0]`` in the file (equals bytes only for ASCII; used in
    messages)."""

    def __init__(self, path: Path, fh, chunk_size: int, on_bytes: Callable[[bytes], None] | None):
        self.path = path
        self._fh, self._chunk_size, self._on_bytes = fh, chunk_size, on_bytes
        self._raw = bytearray()  # bytes read but not decoded yet (a split UTF-8 tail)
        self._eof = False
        self.buf = ""
        self.base = 0

    def fill(self) -> bool:
        """Append the next block to ``buf``; False at the end of the file."""
        if self._eof:
            return False
        block = self._fh.read(self._chunk_size)
        if not block:
            self._eof = True
            if self._raw:
                raise JsonArrayError(f"{self.path}: file ends inside a UTF-8 sequence")
            return False
        if self._on_bytes is not None:
            self._on_bytes(block)
        self._raw += block
        cut = _utf8_cut(self._raw)
        try:
            self.buf += self._raw[:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonArrayError(f"{self.path}: not UTF-8 near character {self.base + len(self.buf)}: {exc}") from exc
        self._raw = self._raw[cut:]
        return True

    def skip_ws(self, pos: int) -> int:
        """The first non-whitespace position at or after ``pos`` (reading on as needed); ``len(buf)`` at EOF."""
        while True:
            while pos < len(self.buf) and self.buf[pos] in _WS:
                pos += 1
            if pos < len(self.buf) or not self.fill():
                return pos

    def drop_consumed(self, pos: int) -> int:
        """Forget the text before ``pos`` once it is longer than a chunk, so memory stays one element + one
        chunk; returns ``pos`` in the new ``buf``."""
        if pos > self._chunk_size:
            self.base += pos
            self.buf = self.buf[pos:]
            return 0
        return pos

    def expect_end(self, pos: int) -> None:
        if pos < len(self.buf):
            raise JsonArrayError(f"{self.path}: trailing data after the closing ']' at character {self.base + pos}")


def _decode_element(text: _TextWindow, decoder: json.JSONDecoder, pos: int, index: int,
                    max_element_chars: int) -> tuple[Any, int]:
    """Element ``index`` starting at ``pos``: ``(value, end)``, reading more text while it is truncated."""
    while True:
        try:
            value, end = decoder.raw_decode(text.buf, pos)
        except json.JSONDecodeError as exc:
            # a truncated element needs more input; a malformed one must not swallow the file
            if len(text.buf) - pos > max_element_chars or not text.fill():
                raise JsonArrayError(
                    f"{text.path}: element {index} at character {text.base + pos} is not valid JSON: {exc.msg}"
                ) from None
            continue
        if end == len(text.buf) and isinstance(value, (int, float)) and text.fill():
            continue  # a number at the end of the buffer may have more digits
        return value, end


def _next_element(text: _TextWindow, end: int, index: int) -> int | None:
    """Where the element after element ``index`` (which ended at ``end``) starts; None after the closing ']'."""
    pos = text.skip_ws(end)
    if pos >= len(text.buf):
        raise JsonArrayError(f"{text.path}: file ends after element {index} without closing ']'")
    if text.buf[pos] == "]":
        text.expect_end(text.skip_ws(pos + 1))
        return None
    if text.buf[pos] != ",":
        raise JsonArrayError(
            f"{text.path}: expected ',' or ']' after element {index} at character {text.base + pos}, got {text.buf[pos]!r}"
        )
    return text.drop_consumed(text.skip_ws(pos + 1))


def iter_json_array(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = _CHUNK,
    on_bytes: Callable[[bytes], None] | None = None,
    max_element_chars: int = 256 << 20,
) -> Iterator[Any]:
    """Yield the elements of the JSON array in ``path`` one at a time (memory ~ one element + a chunk).

    ``on_bytes`` sees every raw byte of the file in order (hash while parsing). Malformed input raises
    :class:`JsonArrayError` with the file, the element index and the byte offset.
    """
    path = Path(path)
    decoder = json.JSONDecoder()
    with open(path, "rb") as fh:
        text = _TextWindow(path, fh, chunk_size, on_bytes)
        pos = text.skip_ws(0)
        if pos >= len(text.buf) or text.buf[pos] != "[":
            raise JsonArrayError(f"{path}: expected a JSON array ('[') at character {text.base + pos}")
        pos = text.skip_ws(pos + 1)
        if pos < len(text.buf) and text.buf[pos] == "]":
            text.expect_end(text.skip_ws(pos + 1))
            return
        index = 0
        while pos is not None:
            value, end = _decode_element(text, decoder, pos, index, max_element_chars)
            yield value
            pos = _next_element(text, end, index)
            index += 1


def write_json_array(path: str | os.PathLike[str], records: Iterable[Any]) -> int:
    """Stream ``records`` into ``path`` as a JSON list, atomically; returns the count.

    The bytes equal ``vila_format.write_json(path, list(records))`` (same separators, same escaping).
    """
    n = 0
    with atomic_open(path, "wb") as fh:
        fh.write(b"[")
        for rec in records:
            if n:
                fh.write(b",")
            fh.write(dump_json(rec).encode("utf-8"))
            n += 1
        fh.write(b"]")
    return n


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def record_images(rec: dict) -> list[str]:
    image = rec.get("image")
    if image is None:
        return []
    return [image] if isinstance(image, str) else list(image)


def image_root(image: str) -> str:
    """The image root a relative image path lives under (``coco/train2017/x.jpg`` -> ``coco/train2017``)."""
    p = PurePosixPath(image)
    best = ""
    for root in KNOWN_IMAGE_ROOTS:
        if image.startswith(root + "/") and len(root) > len(best):
            best = root
    if best:
        return best
    parts = p.parts[:-1]
    return "/".join(parts[:2]) if parts else "."


def conversation_fingerprint(rec: dict) -> bytes:
    """Identity of a sample's content (images + turns, not its id): equal fingerprints = identical
    conversations. 16 bytes of sha256, so a set of 1.2M costs ~100 MB, not the records."""
    key = dump_json([record_images(rec), [[t.get("from"), t.get("value")] for t in rec["conversations"]]])
    return hashlib.sha256(key.encode("utf-8")).digest()[:16]


@dataclass(frozen=True)
class RootPresence:
    root: str
    referenced: int  # image references under this root
    present: int  # of those, files that exist
    root_exists: bool

    @property
    def missing(self) -> int:
        return self.referenced - self.present


# --- whole-file validation ---------------------------------------------------------------------------


@dataclass
class ValidationReport:
    """Counts over one LLaVA JSON file. ``problems`` keeps the first ``max_problems`` messages."""

    path: Path
    records: int = 0
    valid: int = 0
    invalid: int = 0
    with_image: int = 0
    text_only: int = 0
    images: int = 0
    turns: int = 0
    duplicate_ids: int = 0
    duplicate_conversations: int = 0
    roots: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    presence: list["RootPresence"] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    max_problems: int = 20

    @property
    def images_missing(self) -> int:
        return sum(r.missing for r in self.presence)

    def note(self, problem: str) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)


def check_records(
    path: str | os.PathLike[str],
    records: Iterable[Any],
    *,
    strict: bool = True,
    report: ValidationReport | None = None,
) -> Iterator[dict]:
    """Validate each record (VILA's conversation contract); yield the valid ones, counting into ``report``.

    ``strict`` raises :class:`RecordError` on the first invalid record, naming ``path``, the record's
    index and id; otherwise invalid records are counted with their reason and not yielded.
    """
    path = Path(path)
    report = report if report is not None else ValidationReport(path)
    for i, rec in enumerate(records):
        report.records += 1
        problems = validate_conversation_record(rec, where=f"{path} record #{i}")
        if problems:
            report.invalid += 1
            if strict:
                raise RecordError("; ".join(problems))
            for p in problems:
                report.note(p)
            continue
        report.valid += 1
        imgs = record_images(rec)
        report.images += len(imgs)
        if imgs:
            report.with_image += 1
        else:
            report.text_only += 1
        report.turns += len(rec["conversations"])
        for img in imgs:
            report.roots[image_root(img)] += 1
        yield rec


def validate_file(
    path: str | os.PathLike[str], *, strict: bool = True, image_folder: str | os.PathLike[str] | None = None
) -> ValidationReport:
    """Stream-validate a whole file: counts, image roots, duplicate ids, identical conversations and, with
    ``image_folder`` (the registry's ``image_path``), which referenced images exist (``report.presence``)."""
    report = ValidationReport(Path(path))
    ids: set[str] = set()
    prints: set[bytes] = set()
    present: Counter = Counter()
    folder = Path(image_folder) if image_folder is not None else None
    for rec in check_records(path, iter_json_array(path), strict=strict, report=report):
        rid = str(rec["id"])
        if rid in ids:
            report.duplicate_ids += 1
        ids.add(rid)
        fp = conversation_fingerprint(rec)
        if fp in prints:
            report.duplicate_conversations += 1
        prints.add(fp)
        if folder is not None:
            for img in record_images(rec):
                if (folder / img).is_file():
                    present[image_root(img)] += 1
                elif len(report.missing_images) < 5:
                    report.missing_images.append(img)
    if folder is not None:
        report.presence = [
            RootPresence(r, report.roots[r], present[r], (folder / r).is_dir()) for r in sorted(report.roots)
        ]
    return report


# --- the loader's view ---------------------------------------------------------------------------------


def loader_samples(
    data_path: str | os.PathLike[str], image_folder: str | os.PathLike[str] | None, *, open_images: bool = True
) -> Iterator[dict]:
    """Read ``data_path`` the way VILA's ``LazySupervisedDataset`` does, raising where it would fail.

    ``json.load`` of a list; per record, each ``image`` joined to ``image_folder`` must open with PIL and
    ``convert("RGB")``; turns alternate human/gpt starting with human. Yields
    ``{"id", "images": [(w, h)], "turns"}`` per record.
    """
    try:
        with open(data_path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{data_path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, list):
        raise RecordError(f"{data_path}: top level is {type(data).__name__}, not a list")
    for i, rec in enumerate(data):
        sizes = []
        for img in record_images(rec):
            if image_folder is None:
                raise RecordError(f"{data_path} record #{i} (id {rec.get('id')!r}): has an image but no image folder")
            full = os.path.join(image_folder, img)
            if open_images:
                from PIL import Image

                with Image.open(full) as im:
                    sizes.append(im.convert("RGB").size)
            elif not os.path.isfile(full):
                raise FileNotFoundError(full)
        roles = [t["from"] for t in rec["conversations"]]
        expected = ["human" if k % 2 == 0 else "gpt" for k in range(len(roles))]
        if roles != expected:
            raise RecordError(f"{data_path} record #{i} (id {rec.get('id')!r}): turns {roles} do not alternate")
        yield {"id": rec["id"], "images": sizes, "turns": len(roles)}


def image_problem(path: str | os.PathLike[str]) -> str | None:
    """Why VILA could not use the image file at ``path`` (``None``: it opens and decodes).

    Decodes for real (a truncated JPEG only fails when its pixels are read); ``draft`` lets JPEGs decode
    at reduced scale, which still reads every entropy-coded byte.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        return "missing"
    try:
        with Image.open(path) as im:
            im.draft("RGB", (64, 64))
            im.convert("RGB").load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"undecodable: {exc}"
    return None


def image_problems(
    folder: str | os.PathLike[str], names: Iterable[str], *, workers: int | None = None
) -> dict[str, str]:
    """``{name: problem}`` for every image in ``names`` (relative to ``folder``) that is missing or does not
    decode. Threads overlap the decodes (PIL releases the GIL); the result does not depend on scheduling."""
    from concurrent.futures import ThreadPoolExecutor

    from itertools import islice

    folder = Path(folder)
    out: dict[str, str] = {}
    it = iter(names)
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        while batch := list(islice(it, 4096)):  # bounded: Executor.map submits everything it is given
            for n, p in zip(batch, pool.map(lambda n: image_problem(folder / n), batch)):
                if p is not None:
                    out[n] = p
    return out
