"""The data root: where every asset reads and writes, with VILA's registry layout under ``playground/``.

Layout under the root (the only place assets touch)::

    playground/data/...   exactly VILA's registry paths; point VILA's training code here unchanged
    manifests/<family>/   Parquet manifests and per-sample status tables (beside, never inside, shard dirs)
    staging/<family>/     intermediate data (normalised annotations, crawl outputs, checkpoints)
    reports/<family>/     human-readable reports and charts
    cache/                hub downloads and models

The root is a local path by default (``./data``). An fsspec URL (``s3://bucket/prefix``…) is accepted for
publishing finished files with :meth:`DataRoot.publish`; the heavy steps stage on local disk first.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagster as dg
import fsspec

from vila_assets.core.atomic import atomic_write_bytes
from vila_assets.core.vila_format import PLAYGROUND


class DataRoot(dg.ConfigurableResource):
    """Root of all outputs. ``root`` is a local path or an fsspec URL."""

    root: str = "./data"
    local_cache: str = "./data"  # local staging area used when ``root`` is a remote fsspec URL

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def _local_base(self) -> Path:
        base = self.root.removeprefix("file://") if self.is_local else self.local_cache
        return Path(base).expanduser().resolve()

    def path(self, *parts: str) -> Path:
        """A local path under the root (or under the local cache when the root is remote)."""
        return self._local_base().joinpath(*parts)

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

    def write_bytes(self, relpath: str, data: bytes) -> str:
        """Atomically write ``data`` at ``relpath`` under the root (local or fsspec); returns its URL/path."""
        if self.is_local:
            return str(atomic_write_bytes(self.path(relpath), data))
        fs, base = fsspec.core.url_to_fs(self.root)
        target = f"{base.rstrip('/')}/{relpath}"
        tmp = f"{os.path.dirname(target)}/.{os.path.basename(target)}.tmp-{uuid.uuid4().hex}"
        fs.makedirs(os.path.dirname(target), exist_ok=True)
        with fs.open(tmp, "wb") as fh:
            fh.write(data)
        fs.mv(tmp, target)
        return f"{self.root.rstrip('/')}/{relpath}"

    def publish(self, local: Path) -> str:
        """Copy a finished local file under the local base to the same relative place under a remote root."""
        if self.is_local:
            return str(local)
        rel = Path(local).resolve().relative_to(self._local_base()).as_posix()
        return self.write_bytes(rel, Path(local).read_bytes())
