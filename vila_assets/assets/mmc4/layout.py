"""Where every MMC4 file lives under the data root: the only place a file name is spelled.

Per shard ``<key>`` (the zero-padded source index)::

    staging/mmc4/<key>/annotations.parquet     every line: valid/invalid + reason + the doc verbatim
    staging/mmc4/<key>/source.json             which file, stem and revision it came from
    staging/mmc4/<key>/crawl_input.parquet     one row per image (key "<line>-<image index>")
    staging/mmc4/<key>/samples.parquet         the crawler's output
    staging/mmc4/<key>/crawl_fingerprint.json  what samples.parquet was crawled from (input + settings)
    staging/mmc4/_crawl/<range>/               scratch of one ranged crawl (never published)
    manifests/mmc4/images/<key>.parquet        per-image crawl status (no bytes)
    manifests/mmc4/docs/<key>.parquet          per-doc fate: kept / dropped / invalid, with reasons
    playground/data/mmc4-core/pkl-core/<stem>.pkl + <stem>.count   (stem: docs_no_face_shard_N_v3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vila_assets.core import vila_format as vf
from vila_assets.resources.storage import DataRoot

FAMILY = "mmc4"
REGISTRY_NAME = "mmc4core"


@dataclass(frozen=True)
class Mmc4Layout:
    data_root: DataRoot

    # --- staging, per shard --------------------------------------------------------------------------

    def shard_dir(self, key: str) -> Path:
        return self.data_root.staging(FAMILY, key)

    def annotations(self, key: str) -> Path:
        return self.shard_dir(key) / "annotations.parquet"

    def source(self, key: str) -> Path:
        return self.shard_dir(key) / "source.json"

    def crawl_input(self, key: str) -> Path:
        return self.shard_dir(key) / "crawl_input.parquet"

    def samples(self, key: str) -> Path:
        return self.shard_dir(key) / "samples.parquet"

    def crawl_fingerprint(self, key: str) -> Path:
        return self.shard_dir(key) / "crawl_fingerprint.json"

    def download_cache(self) -> Path:
        """Shards downloaded from a URL template or copied from an fsspec source (hub sources use the hub's
        own cache; local directories are read in place)."""
        return self.data_root.cache(FAMILY)

    def crawl_batch(self, label: str) -> Path:
        """Scratch of one ranged crawl (``label``: the run's range), kept only until it is split."""
        return self.data_root.staging(FAMILY, "_crawl", label)

    # --- manifests -------------------------------------------------------------------------------------

    def images_manifest(self, key: str) -> Path:
        return self.data_root.manifests(FAMILY, "images", f"{key}.parquet")

    def docs_manifest(self, key: str) -> Path:
        return self.data_root.manifests(FAMILY, "docs", f"{key}.parquet")

    # --- VILA's directory ------------------------------------------------------------------------------

    @property
    def pkl_dir(self) -> Path:
        """``playground/data/mmc4-core/pkl-core``: only ``.pkl``/``.count`` pairs, ever."""
        return vf.registry_path(REGISTRY_NAME, self.data_root.path())

    def pkl(self, stem: str) -> Path:
        return self.pkl_dir / f"{stem}.pkl"

    def count(self, stem: str) -> Path:
        return self.pkl_dir / f"{stem}.count"
