"""Reading per-shard health back from the instance: the latest materialization of every partition of the
sharded assets, with the metadata ``ShardedRun`` wrote on it (``health``, ``failed_checks``, yields,
bytes, dedup rates).

Incremental: :func:`latest_by_partition` pages through materialization records after a storage id, so a
sensor tick reads only what is new and a report reads each record once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dagster as dg

from vila_assets.assets._sharded import HEALTH_FAILED

PAGE = 1000


@dataclass
class ShardState:
    asset: str
    partition: str
    storage_id: int
    run_id: str
    metadata: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.metadata.get("health") == HEALTH_FAILED

    @property
    def failed_checks(self) -> dict:
        value = self.metadata.get("failed_checks") or {}
        return value if isinstance(value, dict) else {}


def _plain(value):
    return getattr(value, "value", value) if not isinstance(value, (int, float, str, bool)) else value


def iter_materializations(instance: dg.DagsterInstance, asset_key: dg.AssetKey, after: int | None = None
                          ) -> Iterator[ShardState]:
    """Every partitioned materialization of ``asset_key`` after storage id ``after``, oldest first."""
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=after), limit=PAGE, cursor=cursor,
            ascending=True)
        for record in page.records:
            m = record.asset_materialization
            if m is None or m.partition is None:
                continue
            yield ShardState(asset_key.to_user_string(), m.partition, record.storage_id, record.run_id,
                             {k: _plain(v) for k, v in m.metadata.items()})
        if not page.has_more:
            return
        cursor = page.cursor


def latest_by_partition(states: Iterable[ShardState]) -> dict[str, ShardState]:
    """The newest state per partition (states come oldest first)."""
    latest: dict[str, ShardState] = {}
    for s in states:
        latest[s.partition] = s
    return latest


def sharded_asset_keys(assets: Iterable) -> list[dg.AssetKey]:
    """Partitioned, materializable assets among asset definitions, in name order."""
    keys = {k for a in assets if isinstance(a, dg.AssetsDefinition) and a.is_executable and a.partitions_def
            for k in a.keys}
    return sorted(keys, key=lambda k: k.to_user_string())
