"""Atomic file writes: a reader sees the old file or the whole new one, never a torn one."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], tmp_dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a temporary path; rename it over ``path`` only if the block succeeds.

    The temp file lives beside ``path`` (same filesystem, so ``os.replace`` is atomic), named
    ``.<name>.tmp-*`` so globbing for outputs never picks it up, or in ``tmp_dir`` (which must be on the
    same filesystem) for directories whose every entry a reader counts (VILA's shard folders): a process
    killed mid-write then leaves nothing inside them. On error the temp file is removed; temp files of the
same target left by a killed writer are removed by the next write.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    where = Path(tmp_dir) if tmp_dir is not None else target.parent
    where.mkdir(parents=True, exist_ok=True)
    for stale in where.glob(f".{glob.escape(target.name)}.tmp-*"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=where)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb",
                tmp_dir: str | os.PathLike[str] | None = None) -> Iterator[IO]:
    """Open a temp file for writing; it replaces ``path`` when the block exits cleanly."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    with atomic_path(path, tmp_dir) as tmp:
        kwargs = {} if "b" in mode else {"encoding": "utf-8"}
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes,
                       tmp_dir: str | os.PathLike[str] | None = None) -> Path:
    with atomic_open(path, "wb", tmp_dir) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, tmp_dir: str | os.PathLike[str] | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), tmp_dir)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fresh_temp_dir(dest: str | os.PathLike[str]) -> Path:
    """A new empty folder ``.<name>.tmp-*`` beside ``dest`` (same file system, so :func:`replace_dir` can
    rename it into place), readable like an ordinary directory. Temp and set-aside folders of the same
    ``dest`` that a killed process left (``.<name>.tmp-*``, ``.<name>.old-*``) are removed first: one
    writer per ``dest`` at a time (Dagster runs one partition once)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".{glob.escape(dest.name)}.tmp-*", f".{glob.escape(dest.name)}.old-*"):
        for stale in dest.parent.glob(pattern):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; what is renamed into place is an ordinary directory
    return tmp


def replace_dir(new: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Put directory ``new`` at ``dest`` in one rename (same file system): an old tree is moved aside
    first and deleted after; if the rename fails, the old tree is put back."""
    new, dest = Path(new), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists() or dest.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.rmdir(old)
        os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
