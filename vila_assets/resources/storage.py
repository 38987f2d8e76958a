"""The data root: where every asset reads and writes, with VILA's registry layout under ``playground/``.

Layout under the root (the only place assets touch)::

    playground/data/...   exactly VILA's registry paths; point VILA's training code here unchanged
    manifests/<family>/   Parquet manifests and per-sample status tables (beside, never inside, shard dirs)
    staging/<family>/     intermediate data (normalised annotations, crawl outputs, checkpoints)
    reports/<family>/     human-readable reports and charts
    cache/                hub downloads and models (never published)

Two implementations of one interface, picked by the deployment profile (``vila_assets.profiles``):

- :class:`LocalDataRoot`: a directory; work happens in place and ``publish`` has nothing to do.
- :class:`FsspecDataRoot`: any fsspec URL (``s3://bucket/prefix``, ``gs://``, ``memory://`` ...). Steps
  work in a local working copy (``local_cache``) and ``publish`` every finished file to the same
  relative place under the URL (through a temporary object and a move, except on object stores whose
  PUT is already atomic); ``fetch`` brings a published file back into the working copy when a
  step runs on another machine than the one that wrote it (a Kubernetes pod, say).

Assets only ever call ``path``/``playground``/``manifests``/``staging``/``reports``/``cache`` to get local
paths, ``publish``/``publish_dir`` once a file or a shard directory is final, and ``fetch`` before reading
what an upstream asset published.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import dagster as dg
import fsspec

from vila_assets.core.atomic import atomic_write_bytes
from vila_assets.core.vila_format import PLAYGROUND

# Scratch for remote uploads: outside every directory VILA lists, so a half-written object is never
# seen inside a shard folder.
REMOTE_TMP = "_tmp"
# Object stores whose PUT is atomic (an object appears whole or not at all): no temporary object needed.
ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


class DataRoot(dg.ConfigurableResource):
    """The interface every family uses. Subclasses say where the working copy is and how to publish."""

    def local_base(self) -> Path:
        raise NotImplementedError

    @property
    def is_local(self) -> bool:
        return True

    # --- local paths (the working copy) -------------------------------------------------------------

    def path(self, *parts: str) -> Path:
        """A local path under the root's working copy."""
        return self.local_base().joinpath(*parts)

    def playground(self, *parts: str) -> Path:
        return self.path(str(PLAYGROUND), *parts)

    def manifests(self, family: str, *parts: str) -> Path:
        return self.path("manifests", family, *parts)

    def staging(self, family: str, *parts: str) -> Path:
        return self.path("staging", family, *parts)

    def reports(self, family: str, *parts: str) -> Path:
        return self.path("reports", family, *parts)

    def cache(self, *parts: str) -> Path:
        return self.path("cache", *parts)

    def relpath(self, local: str | os.PathLike[str]) -> str:
        """``local``'s place under the root, as a POSIX path (raises if it is outside the working copy)."""
        return Path(local).resolve().relative_to(self.local_base()).as_posix()

    # --- publishing ----------------------------------------------------------------------------------

    def url(self, local: str | os.PathLike[str]) -> str:
        """Where ``local`` is (or will be) published: the local path itself for a local root."""
        return str(local)

    def write_bytes(self, relpath: str, data: bytes) -> str:
        """Atomically write ``data`` at ``relpath`` in the working copy and publish it; returns its URL."""
        return self.publish(atomic_write_bytes(self.path(relpath), data))

    def publish(self, *locals_: str | os.PathLike[str]) -> str:
        """Make finished local files visible under the root; returns the URL of the last one."""
        return str(locals_[-1]) if locals_ else ""

    def publish_dir(self, local_dir: str | os.PathLike[str]) -> str:
        """Mirror a finished directory (a VILA shard folder): every file, and nothing stale beside them."""
        return str(local_dir)

    def fetch(self, local: str | os.PathLike[str]) -> Path:
        """``local`` in the working copy, downloaded from the root first when only the root has it."""
        return Path(local)

    def fetch_dir(self, local_dir: str | os.PathLike[str]) -> Path:
        return Path(local_dir)


class LocalDataRoot(DataRoot):
    """A data root on a local (or mounted) file system; work happens in place."""

    root: str = "./data"

    def local_base(self) -> Path:
        return Path(self.root.removeprefix("file://")).expanduser().resolve()


class FsspecDataRoot(DataRoot):
    """A data root at an fsspec URL. ``local_cache`` holds the working copy; ``storage_options`` go to
    fsspec (for S3: ``{"client_kwargs": {"endpoint_url": ...}}``; credentials come from the usual
    environment or instance profile, never from this config)."""

    url_root: str
    local_cache: str = "./data"
    storage_options: dict = {}

    @property
    def is_local(self) -> bool:
        return False

    def local_base(self) -> Path:
        return Path(self.local_cache).expanduser().resolve()

    def _fs(self):
        fs, base = fsspec.core.url_to_fs(self.url_root, **self.storage_options)
        fs.invalidate_cache()  # instances are shared; another process may have changed the listing
        return fs, base.rstrip("/")

    def url(self, local: str | os.PathLike[str]) -> str:
        return f"{self.url_root.rstrip('/')}/{self.relpath(local)}"

    def _put(self, fs, base: str, local: Path) -> None:
        target = f"{base}/{self.relpath(local)}"
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if protocols & ATOMIC_PUT_PROTOCOLS:
            fs.put_file(str(local), target)
            return
        tmp = f"{base}/{REMOTE_TMP}/{uuid.uuid4().hex}-{local.name}"
        fs.makedirs(str(PurePosixPath(tmp).parent), exist_ok=True)
        fs.put_file(str(local), tmp)
        fs.makedirs(str(PurePosixPath(target).parent), exist_ok=True)
        fs.mv(tmp, target)

    def _take_down_changed_counts(self, fs, base: str, files: list[Path], remote: set[str] | None = None) -> None:
        """VILA's loader opens every counted shard and trusts its count: before a new ``.pkl`` replaces
        an old one, a remote ``.count`` that no longer matches goes (the shard is then uncounted, so
        skipped, until its new ``.count`` is up)."""
        for f in files:
            if f.suffix != ".count":
                continue
            target = f"{base}/{self.relpath(f)}"
            if (target in remote) if remote is not None else fs.exists(target):
                if fs.cat_file(target) != f.read_bytes():
                    fs.rm_file(target)

    def publish(self, *locals_: str | os.PathLike[str]) -> str:
        fs, base = self._fs()
        files = [Path(local).resolve() for local in locals_]
        self._take_down_changed_counts(fs, base, files)
        for f in files:
            self._put(fs, base, f)
        return self.url(locals_[-1]) if locals_ else ""

    def publish_dir(self, local_dir: str | os.PathLike[str]) -> str:
        """Every file of ``local_dir``, then nothing stale beside them, in the order that keeps a shard
        folder loadable at every moment: changed ``.count`` files down first, ``.pkl`` files up before
        any ``.count``, stale ``.count`` files removed before their ``.pkl``."""
        local_dir = Path(local_dir).resolve()
        fs, base = self._fs()
        files = sorted(p for p in local_dir.rglob("*") if p.is_file())
        remote_dir = f"{base}/{self.relpath(local_dir)}"
        self._take_down_changed_counts(fs, base, files, set(_remote_files(fs, remote_dir)))
        for f in sorted(files, key=lambda p: p.suffix == ".count"):  # stable sort: counts last
            self._put(fs, base, f)
        want = {self.relpath(f) for f in files}
        stale = [r for r in _remote_files(fs, remote_dir) if r.removeprefix(base + "/") not in want]
        for r in sorted(stale, key=lambda r: not r.endswith(".count")):  # counts first
            fs.rm_file(r)
        return self.url(local_dir)

    def fetch(self, local: str | os.PathLike[str]) -> Path:
        local = Path(local)
        if not local.exists():
            fs, base = self._fs()
            remote = f"{base}/{self.relpath(local)}"
            if fs.exists(remote):
                local.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(local, fs.cat_file(remote))
        return local

    def fetch_dir(self, local_dir: str | os.PathLike[str]) -> Path:
        local_dir = Path(local_dir)
        fs, base = self._fs()
        for remote in _remote_files(fs, f"{base}/{self.relpath(local_dir)}"):
            self.fetch(self.local_base() / remote.removeprefix(base + "/"))
        return local_dir


def _remote_files(fs, remote_dir: str) -> Iterable[str]:
    if not fs.exists(remote_dir):
        return []
    return sorted(p for p in fs.find(remote_dir) if not p.rstrip("/").endswith("/"))
