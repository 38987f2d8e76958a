"""Any source, anywhere: one view of a dataset's files, whether they sit on a hub, in a local directory or
behind an fsspec URL.

``open_source(location, revision, hub)`` gives a :class:`SourceTree` for

- a hub repo: ``owner/name`` or ``hf:owner/name`` (``revision`` is resolved to a commit sha once, and
  every later read is pinned to it);
- a local directory: an absolute path, ``./relative``, ``~/...`` or ``file:///...`` (a user who already
  holds the data points here; ``revision`` is ignored and recorded as ``None``);
- any other fsspec URL: ``s3://bucket/prefix``, ``gs://...``, ``memory://...`` (files are copied into
  ``cache_dir`` once, by size, before they are read; ``revision`` is ignored).

Every tree lists the same relative POSIX paths as the hub repo would (``data/part-00000-....parquet``),
so the families' readers see one layout, and every error names the location and the file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from vila_assets.core.hub import HubError, HubLocation


class SourceError(RuntimeError):
    """A source could not be listed or a file could not be read; the message names location and file."""


class SourceTree(Protocol):
    location: str

    @property
    def revision(self) -> str | None:
        """The pinned revision (a hub commit sha), None where the source has none."""

    def list_files(self, pattern: str | None = None) -> list[str]:
        """Sorted relative paths of every file (optionally matching a glob on the whole path)."""

    def fetch(self, relpath: str) -> Path:
        """A local path holding the file's bytes."""

    def describe(self, relpath: str | None = None) -> str:
        """A human-readable name for the tree (or one file in it), for errors and metadata."""


def _check_relpath(location: str, relpath: str) -> str:
    p = PurePosixPath(relpath)
    if p.is_absolute() or ".." in p.parts or not relpath or "\\" in relpath:
        raise SourceError(f"{location}: refusing file name {relpath!r} (absolute, empty or escaping the source)")
    return p.as_posix()


def _match(files: list[str], pattern: str | None) -> list[str]:
    return sorted(f for f in files if pattern is None or fnmatch.fnmatchcase(f, pattern))


@dataclass
class HubTree:
    """A hub dataset (or model) repo at one commit."""

    repo_id: str
    hub: HubLocation
    requested_revision: str = "main"
    repo_type: str = "dataset"
    _sha: str | None = field(default=None, repr=False)

    @property
    def location(self) -> str:
        return f"hf:{self.repo_id}"

    @property
    def revision(self) -> str:
        if self._sha is None:
            self._sha = self.hub.resolve_revision(self.repo_id, self.requested_revision, self.repo_type)
        return self._sha

    def list_files(self, pattern: str | None = None) -> list[str]:
        return self.hub.list_files(self.repo_id, self.revision, self.repo_type, pattern)

    def fetch(self, relpath: str) -> Path:
        relpath = _check_relpath(self.describe(), relpath)
        return self.hub.download(self.repo_id, relpath, self.revision, self.repo_type)

    def describe(self, relpath: str | None = None) -> str:
        base = f"{self.repo_id}@{self._sha or self.requested_revision}"
        return f"{base}/{relpath}" if relpath else base


@dataclass
class LocalTree:
    """A directory a user already holds (the same layout as the hub repo)."""

    directory: Path

    @property
    def location(self) -> str:
        return str(self.directory)

    @property
    def revision(self) -> None:
        return None

    def list_files(self, pattern: str | None = None) -> list[str]:
        if not self.directory.is_dir():
            raise SourceError(f"{self.directory}: source directory does not exist")
        files = []
        for dirpath, dirnames, filenames in os.walk(self.directory):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .git, .cache/huggingface
            rel = Path(dirpath).relative_to(self.directory)
            files += [(rel / f).as_posix() for f in filenames if not f.startswith(".")]
        return _match(files, pattern)

    def fetch(self, relpath: str) -> Path:
        path = self.directory / _check_relpath(str(self.directory), relpath)
        if not path.is_file():
            raise SourceError(f"{path}: no such file in source directory {self.directory}")
        return path

    def describe(self, relpath: str | None = None) -> str:
        return str(self.directory / relpath) if relpath else str(self.directory)


@dataclass
class FsspecTree:
    """Any fsspec URL (object stores, memory://, ...): files are copied to ``cache_dir`` once, then read."""

    url: str
    cache_dir: Path
    storage_options: dict = field(default_factory=dict)

    @property
    def location(self) -> str:
        return self.url

    @property
    def revision(self) -> None:
        return None

    def _fs(self):
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, root.rstrip("/")

    def list_files(self, pattern: str | None = None) -> list[str]:
        fs, root = self._fs()
        try:
            found = fs.find(root)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.url}: source does not exist") from exc
        files = [p[len(root):].lstrip("/") for p in found]
        files = [f for f in files if f and not any(part.startswith(".") for part in f.split("/"))]
        if not files and not fs.exists(root):
            raise SourceError(f"{self.url}: source does not exist")
        return _match(files, pattern)

    def fetch(self, relpath: str) -> Path:
        relpath = _check_relpath(self.url, relpath)
        fs, root = self._fs()
        remote = f"{root}/{relpath}"
        try:
            size = fs.size(remote)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.describe(relpath)}: no such file") from exc
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        local = self.cache_dir / key / relpath
        if local.is_file() and local.stat().st_size == size:
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
        try:
            with fs.open(remote, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
        return local

    def describe(self, relpath: str | None = None) -> str:
        return f"{self.url.rstrip('/')}/{relpath}" if relpath else self.url


def is_local_path(location: str) -> bool:
    return location.startswith(("/", "./", "../", "~", "file://")) or location in (".", "..")


def open_source(location: str, revision: str = "main", hub: HubLocation | None = None, *,
                cache_dir: str | Path | None = None, repo_type: str = "dataset",
                storage_options: dict | None = None) -> SourceTree:
    """The tree at ``location`` (see the module docstring for its three forms)."""
    if not location or not location.strip():
        raise SourceError("empty source location")
    if is_local_path(location):
        return LocalTree(Path(location.removeprefix("file://")).expanduser().resolve())
    if "://" in location:
        return FsspecTree(location, Path(cache_dir or "./data/cache/sources"), storage_options or {})
    repo_id = location.removeprefix("hf:")
    if repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
        raise SourceError(f"{location!r}: not a hub repo id (owner/name), a local directory (absolute or ./) "
                          "or an fsspec URL")
    return HubTree(repo_id, hub or HubLocation(), revision or "main", repo_type)


__all__ = ["FsspecTree", "HubError", "HubTree", "LocalTree", "SourceError", "SourceTree", "is_local_path",
           "open_source"]
