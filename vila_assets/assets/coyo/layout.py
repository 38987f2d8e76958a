"""Where every COYO file lives under the data root: the only place its file names are spelled.

Per shard ``<key>``::

    staging/coyo/<key>/source.json         source location, file and the commit sha it was read at (hub)
    staging/coyo/<key>/selection.parquet   the selected rows in rank order
    staging/coyo/<key>/selection.json      the selection summary (counts, cut, ties)
    staging/coyo/<key>/samples.parquet     the crawler's output, one row per selected row, same order
    staging/coyo/pkl/<key>.pkl             VILA's per-shard output: list of {id, url, text, clip_sim, image}
    manifests/coyo/samples/<key>.parquet   per selected row: crawl status, fresh score, kept / drop reason
    manifests/coyo/shards/<key>.json       the shard's re-score summary
    reports/coyo/fresh_scores_<key>.png    fresh-score histogram

For the split: ``playground/data/coyo-700m/pkl02-split/part-%05d.pkl`` + ``.count`` (VILA's registry
path) and ``manifests/coyo/split.parquet`` (part, index, shard, id, repeat; part null for records the vila
policy drops with VILA's final partial part). Crawl scratch (never published):
``staging/coyo/_crawl/<first>-<last>-<n>/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vila_assets.core.vila_format import registry_path
from vila_assets.resources.storage import DataRoot

FAMILY = "coyo"
REGISTRY_NAME = "coyo"  # VILA's dataset registry entry


@dataclass(frozen=True)
class CoyoLayout:
    data_root: DataRoot

    def _staging(self, *parts: str) -> Path:
        return self.data_root.staging(FAMILY, *parts)

    # --- per shard ---------------------------------------------------------------------------------

    def source(self, key: str) -> Path:
        return self._staging(key, "source.json")

    def selection(self, key: str) -> Path:
        return self._staging(key, "selection.parquet")

    def selection_summary(self, key: str) -> Path:
        return self._staging(key, "selection.json")

    def samples(self, key: str) -> Path:
        return self._staging(key, "samples.parquet")

    def shard_pickle(self, key: str) -> Path:
        return self._staging("pkl", f"{key}.pkl")

    def samples_manifest(self, key: str) -> Path:
        return self.data_root.manifests(FAMILY, "samples", f"{key}.parquet")

    def shard_summary(self, key: str) -> Path:
        return self.data_root.manifests(FAMILY, "shards", f"{key}.json")

    def fresh_scores_png(self, key: str) -> Path:
        return self.data_root.reports(FAMILY, f"fresh_scores_{key}.png")

    # --- per run / whole family --------------------------------------------------------------------

    def crawl_batch(self, label: str) -> Path:
        """Scratch of one ranged crawl (``ShardedRun.label``): a retried run over the same range resumes."""
        return self._staging("_crawl", label)

    def split_dir(self) -> Path:
        return registry_path(REGISTRY_NAME, self.data_root.path())

    def split_manifest(self) -> Path:
        return self.data_root.manifests(FAMILY, "split.parquet")
