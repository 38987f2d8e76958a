"""Safe untar, the tar counterpart of ``safe_zip`` (SA-1B ships its images as ``sa_000000.tar`` ...).

Every member is vetted before a byte is written, with the same rules and limits as
:func:`vila_assets.core.safe_zip.safe_extract`: names that escape the destination, links, devices and
fifos, two members on one path, too many members or too many bytes are refused, naming the archive and
the member. The files are written into a temporary directory beside ``dest`` that becomes ``dest`` in one
rename once the last member is written.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from vila_assets.core.atomic import fresh_temp_dir
from vila_assets.core.safe_zip import ExtractSummary, UnsafeZipError, ZipLimits, safe_relpath

_COPY_CHUNK = 1 << 20


def _vet(tar_path: Path, members: list[tarfile.TarInfo],
         limits: ZipLimits) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    if len(members) > limits.max_entries:
        raise UnsafeZipError(f"{tar_path}: {len(members)} members exceed the limit of {limits.max_entries}")
    vetted, seen, total = [], set(), 0
    for m in members:
        where = f"{tar_path}: member {m.name!r}"
        try:
            rel = safe_relpath(m.name)
        except ValueError as exc:
            raise UnsafeZipError(f"{where}: {exc}") from None
        if not (m.isreg() or m.isdir()):
            raise UnsafeZipError(f"{where}: not a plain file or directory (links and devices are refused)")
        if m.isreg():
            if rel.as_posix() in seen:
                raise UnsafeZipError(f"{where}: a second member for the same path")
            if m.size > limits.max_entry_bytes:
                raise UnsafeZipError(f"{where}: {m.size} bytes exceed the per-file limit of {limits.max_entry_bytes}")
            total += m.size
            if total > limits.max_total_bytes:
                raise UnsafeZipError(
                    f"{where}: archive expands past the limit of {limits.max_total_bytes} bytes in all")
            seen.add(rel.as_posix())
        vetted.append((m, rel))
    return vetted


def _copy(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = tar.extractfile(member)
    n = 0
    with src, open(target, "wb") as out:
        while block := src.read(_COPY_CHUNK):
            out.write(block)
            n += len(block)
    return n


def safe_untar(tar_path: str | os.PathLike[str], dest: str | os.PathLike[str],
               limits: ZipLimits = ZipLimits()) -> ExtractSummary:
    """Extract ``tar_path`` into ``dest``, which must not exist yet (it appears whole or not at all)."""
    tar_path, dest = Path(tar_path), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; safe_untar only creates a new directory")
    try:
        tar = tarfile.open(tar_path)
    except (tarfile.TarError, OSError) as exc:
        raise UnsafeZipError(f"{tar_path}: not a readable tar archive ({exc})") from exc
    tmp = fresh_temp_dir(dest)
    files = dirs = written = 0
    try:
        with tar:
            for member, rel in _vet(tar_path, tar.getmembers(), limits):
                target = tmp.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    dirs += 1
                else:
                    written += _copy(tar, member, target)
                    files += 1
        os.replace(tmp, dest)
    except tarfile.TarError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafeZipError(f"{tar_path}: corrupt archive ({exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExtractSummary(tar_path, dest, files, dirs, written)
