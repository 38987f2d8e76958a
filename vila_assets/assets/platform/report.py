"""The platform report: per family and per shard, what survived, what failed and why, as two Parquet
tables under ``<root>/reports/platform/`` and as tables and charts in the materialization's metadata.

- ``shards.parquet``: one row per partition of every sharded asset (its latest materialization): asset,
  partition, health, failed checks (JSON), run id.
- ``metrics.parquet``: one row per (asset, partition, metric) for every number those materializations
  recorded (yields, bytes, records, dedup rates); unpartitioned assets have partition ``""``.
"""


import base64
import json
import math
from collections import Counter, defaultdict

import dagster as dg
import polars as pl

from vila_assets.assets._metadata import distribution_png, md_table, path_value
from vila_assets.assets.platform.shard_health import ShardState, iter_materializations, latest_by_partition
from vila_assets.core.atomic import atomic_path
from vila_assets.resources.storage import DataRoot

# the families' leaf assets: the report runs after them in the demo and in the lineage graph
LEAVES = ("mmc4_core_shard", "coyo_split", "vflan_chunks", "sft_mixture", "llava_cc3m_595k")


def _numbers(metadata: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metadata.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def collect(instance: dg.DagsterInstance) -> tuple[list[ShardState], list[ShardState]]:
    """(latest state per partition of partitioned assets, latest state of unpartitioned assets)."""
    sharded, whole = [], []
    for key in sorted(instance.get_asset_keys(), key=lambda k: k.to_user_string()):
        sharded += latest_by_partition(iter_materializations(instance, key)).values()
        latest = instance.fetch_materializations(key, limit=1, ascending=False).records
        m = latest[0].asset_materialization if latest else None
        if m is not None and m.partition is None:
            whole.append(ShardState(key.to_user_string(), "", latest[0].storage_id, latest[0].run_id,
                                    {k: getattr(v, "value", v) for k, v in m.metadata.items()}))
    return sharded, whole


def write_tables(sharded: list[ShardState], whole: list[ShardState], data_root: DataRoot) -> list:
    shards = pl.DataFrame(
        {"asset": [s.asset for s in sharded], "partition": [s.partition for s in sharded],
         "health": [str(s.metadata.get("health", "unknown")) for s in sharded],
         "failed_checks": [json.dumps(s.failed_checks, sort_keys=True) for s in sharded],
         "run_id": [s.run_id for s in sharded]},
        schema={"asset": pl.Utf8, "partition": pl.Utf8, "health": pl.Utf8, "failed_checks": pl.Utf8, "run_id": pl.Utf8})
    rows = [(s.asset, s.partition, k, v) for s in [*sharded, *whole] for k, v in sorted(_numbers(s.metadata).items())]
    metrics = pl.DataFrame(rows, schema={"asset": pl.Utf8, "partition": pl.Utf8, "metric": pl.Utf8,
                                         "value": pl.Float64}, orient="row")
    paths = []
    for name, frame in (("shards.parquet", shards), ("metrics.parquet", metrics)):
        path = data_root.reports("platform", name)
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)
        paths.append(path)
    data_root.publish(*paths)
    return paths


def summary_rows(sharded: list[ShardState]) -> list[tuple]:
    by_asset: dict[str, list[ShardState]] = defaultdict(list)
    for s in sharded:
        by_asset[s.asset].append(s)
    rows = []
    for asset, states in sorted(by_asset.items()):
        reasons = Counter(check for s in states for check in s.failed_checks)
        failed = [s.partition for s in states if s.failed]
        rows.append((asset, len(states), len(states) - len(failed), len(failed),
                     ", ".join(f"{c} ×{n}" for c, n in reasons.most_common(3)) or "—",
                     ", ".join(failed[:5]) + (" …" if len(failed) > 5 else "")))
    return rows


def yield_charts(sharded: list[ShardState]) -> str:
    """One distribution per (asset, yield metric) over shards, as inline PNGs."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in sharded:
        for k, v in _numbers(s.metadata).items():
            if "yield" in k or k.endswith("_rate"):
                values[(s.asset, k)].append(v)
    parts = []
    for (asset, metric), vs in sorted(values.items()):
        png = base64.b64encode(distribution_png(vs, title=f"{asset} · {metric} ({len(vs)} shards)")).decode()
        parts.append(f"**{asset} · {metric}**\n\n![{metric}](data:image/png;base64,{png})")
    return "\n\n".join(parts) or "no per-shard yields recorded yet"


@dg.asset(
    group_name="platform",
    deps=list(LEAVES),
    kinds={"polars", "parquet"},
    description="Per family and shard: health, failure reasons, yields, bytes and dedup rates (Parquet + charts).",
)
def platform_report(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.MaterializeResult:
    sharded, whole = collect(context.instance)
    paths = write_tables(sharded, whole, data_root)
    rows = summary_rows(sharded)
    return dg.MaterializeResult(metadata={
        "shards": len(sharded),
        "unhealthy_shards": sum(r[3] for r in rows),
        "health": md_table(("asset", "shards", "ok", "failed", "top failing checks", "failed shards"), rows),
        "families": md_table(("asset", "metric", "value"), [
            (s.asset, k, round(v, 4)) for s in whole for k, v in sorted(_numbers(s.metadata).items())]),
        "yield_charts": dg.MetadataValue.md(yield_charts(sharded)),
        "shards_table": path_value(data_root, paths[0]),
        "metrics_table": path_value(data_root, paths[1]),
    })
