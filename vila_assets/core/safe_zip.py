"""Safe unzip: every entry is vetted before a byte is written, and the result appears atomically.

``unzip images.zip -d images`` (VILA's instruction for CC3M-595K) trusts the archive. An archive from a hub
is input like any other, so :func:`safe_extract` refuses, naming the zip and the entry:

- names that escape the destination: absolute paths (``/x``, ``C:x``), ``..`` components, backslashes
  (a separator on Windows, so ``..\\x`` is traversal there), NUL bytes, empty names;
- entries that are not plain files or directories (symlinks, devices, fifos) and encrypted entries;
- two entries that land on the same path (the later one would silently replace the earlier);
- more than ``max_entries`` entries, a file larger than ``max_entry_bytes``, more than ``max_total_bytes``
  in all, or a compression ratio above ``max_ratio`` (decompression bombs) for entries of at least
  ``ratio_min_bytes``;
- data that decompresses to more than the header declared (the copy loop counts bytes itself).

Extraction goes to a temporary directory beside ``dest`` that is renamed into place when every entry has
been written, so a reader sees the old tree or the whole new one, and a failure leaves no partial tree.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vila_assets.core.atomic import fresh_temp_dir, replace_dir

_COPY_CHUNK = 1 << 20


class UnsafeZipError(ValueError):
    """An archive (or one of its entries) that :func:`safe_extract` refuses; names zip + entry."""


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 2_000_000  # CC3M-595K holds 595,375 images
    max_entry_bytes: int = 256 << 20
    max_total_bytes: int = 64 << 30  # CC3M-595K's images.zip is 6.46 GB of JPEGs
    max_ratio: float = 100.0  # JPEGs barely compress; text rarely beats 20:1
    ratio_min_bytes: int = 1 << 20  # tiny entries may compress arbitrarily well without being bombs


@dataclass(frozen=True)
class ExtractSummary:
    zip_path: Path
    dest: Path
    files: int
    dirs: int
    bytes: int


def _member_kind(info: zipfile.ZipInfo) -> str:
    """'file', 'dir' or the name of a refused special type, from the Unix mode bits (if any)."""
    mode = info.external_attr >> 16
    if mode and stat.S_IFMT(mode):
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISDIR(mode):
            return "dir"
        if not stat.S_ISREG(mode):
            return "special file"
    return "dir" if info.filename.endswith("/") else "file"


def safe_relpath(name: str) -> PurePosixPath:
    """The entry's path relative to the destination, or a ValueError saying why it is unsafe."""
    if not name:
        raise ValueError("empty entry name")
    if "\x00" in name:
        raise ValueError("NUL byte in entry name")
    if "\\" in name:
        raise ValueError("backslash in entry name (a path separator on Windows)")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        raise ValueError("absolute path")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' component escapes the destination")
    if not parts:
        raise ValueError("entry name resolves to the destination itself")
    return PurePosixPath(*parts)


def _vet_entry(where: str, info: zipfile.ZipInfo, seen: dict[str, str], limits: ZipLimits) -> tuple[PurePosixPath, str]:
    """``(relative path, kind)`` of one entry, or :class:`UnsafeZipError` (``where`` names zip + entry)
    for an unsafe name, a special or encrypted entry, a second entry for a path, or an oversized file."""
    try:
        rel = safe_relpath(info.filename)
    except ValueError as exc:
        raise UnsafeZipError(f"{where}: {exc}") from None
    kind = _member_kind(info)
    if kind not in ("file", "dir"):
        raise UnsafeZipError(f"{where}: is a {kind}; only regular files and directories are extracted")
    if info.flag_bits & 0x1:
        raise UnsafeZipError(f"{where}: is encrypted")
    key = rel.as_posix()
    if key in seen and not (kind == "dir" and seen[key] == "dir"):
        raise UnsafeZipError(f"{where}: a second entry for {key!r} would overwrite the first")
    seen[key] = kind
    if kind == "file":
        if info.file_size > limits.max_entry_bytes:
            raise UnsafeZipError(
                f"{where}: {info.file_size} bytes uncompressed exceed the per-entry limit of {limits.max_entry_bytes}"
            )
        if info.file_size >= limits.ratio_min_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise UnsafeZipError(
                    f"{where}: compression ratio {ratio:.0f}:1 exceeds {limits.max_ratio:.0f}:1 (decompression bomb?)"
                )
    return rel, kind


def _check_no_file_parents(zip_path: Path, seen: dict[str, str]) -> None:
    """A file entry must not also be a directory on the way to another entry ("a" and "a/b")."""
    for key in seen:
        for parent in PurePosixPath(key).parents:
            p = parent.as_posix()
            if p != "." and seen.get(p) == "file":
                raise UnsafeZipError(f"{zip_path}: entry {key!r} lies under {p!r}, which is a file entry")


def check_zip(zip_path: str | os.PathLike[str], limits: ZipLimits = ZipLimits()) -> list[tuple[zipfile.ZipInfo, PurePosixPath, str]]:
    """Vet every entry of ``zip_path``; returns ``(info, relative path, kind)`` per entry, or raises
    :class:`UnsafeZipError` naming the zip and the first offending entry."""
    zip_path = Path(zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeZipError(f"{zip_path}: not a readable zip archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise UnsafeZipError(f"{zip_path}: {len(infos)} entries exceed the limit of {limits.max_entries}")
    vetted = []
    seen: dict[str, str] = {}
    total = 0
    for info in infos:
        where = f"{zip_path}: entry {info.filename!r}"
        rel, kind = _vet_entry(where, info, seen, limits)
        if kind == "file":
            total += info.file_size
            if total > limits.max_total_bytes:
                raise UnsafeZipError(
                    f"{where}: archive expands past the limit of {limits.max_total_bytes} bytes in all"
                )
        vetted.append((info, rel, kind))
    _check_no_file_parents(zip_path, seen)
    return vetted


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, zip_path: Path) -> int:
    """Write one file entry to ``target``, counting the bytes itself: an entry that decompresses to more
    than its header declared is refused. Returns the bytes written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with zf.open(info) as src, open(target, "wb") as out:
        while block := src.read(_COPY_CHUNK):
            n += len(block)
            if n > info.file_size:
                raise UnsafeZipError(
                    f"{zip_path}: entry {info.filename!r}: decompresses past its declared {info.file_size} bytes"
                )
            out.write(block)
    return n


def safe_extract(
    zip_path: str | os.PathLike[str], dest: str | os.PathLike[str], limits: ZipLimits = ZipLimits()
) -> ExtractSummary:
    """Extract ``zip_path`` into ``dest`` (replacing a previous ``dest`` atomically).

    Everything is vetted first (:func:`check_zip`), then written to ``.<dest>.tmp-*`` beside ``dest``,
    which replaces ``dest`` only after the last entry is written.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    vetted = check_zip(zip_path, limits)
    tmp = fresh_temp_dir(dest)
    files = dirs = written = 0
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info, rel, kind in vetted:
                target = tmp.joinpath(*rel.parts)
                if kind == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                    dirs += 1
                else:
                    written += _copy_entry(zf, info, target, zip_path)
                    files += 1
        replace_dir(tmp, dest)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafeZipError(f"{zip_path}: corrupt archive ({exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExtractSummary(zip_path, dest, files, dirs, written)


