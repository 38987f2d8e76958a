"""Per-shard health: a ranged run marks each shard's own partition, the sensor re-runs only failed shards,
and the platform report tabulates health, reasons and yields."""

import json

import dagster as dg
import polars as pl

from vila_assets.assets._checks import Check
from vila_assets.assets._sharded import ShardedRun, ranged
from vila_assets.assets.platform.report import platform_report
from vila_assets.assets.platform.sensors import MAX_ATTEMPTS, rerun_unhealthy_shards

RERUN_SENSOR, RERUN_JOBS = rerun_unhealthy_shards([dg.AssetKey("toy_shards")])
from vila_assets.profiles import data_root_at

SHARDS = dg.StaticPartitionsDefinition([f"{i:05d}" for i in range(6)])
YIELD = Check("shard_yield", "every shard keeps at least half its rows")
BAD = {"bad": {"00002", "00004"}}  # which shards the toy asset fails; tests edit it


@dg.asset(partitions_def=SHARDS, backfill_policy=ranged(50), check_specs=[YIELD.spec("toy_shards")])
def toy_shards(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    run = ShardedRun(context, [YIELD])
    for key in run:
        y = 0.1 if key in BAD["bad"] else 0.9
        run.findings.bound("shard_yield", key, y, 0.5, what="yield")
        run.record(key, {"image_yield": y, "bytes": 1000}, rows=10)
    return run.result()


@dg.asset
def toy_whole() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"records": 42, "yield": 0.75})


def _defs(tmp_path):
    leaves = [dg.AssetSpec(k) for k in ("mmc4_core_shard", "coyo_split", "vflan_chunks", "sft_mixture",
                                        "llava_cc3m_595k")]
    return dg.Definitions(assets=[toy_shards, toy_whole, platform_report, *leaves], sensors=[RERUN_SENSOR], jobs=RERUN_JOBS,
                          resources={"data_root": data_root_at(str(tmp_path / "data"))})


def _run_range(defs, instance, keys):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=[dg.AssetKey("toy_shards")], instance=instance, raise_on_error=False,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})


def _health(instance):
    out = {}
    for key in SHARDS.get_partition_keys():
        rec = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("toy_shards"),
                                                                    asset_partitions=[key]), limit=1).records
        md = rec[0].asset_materialization.metadata
        out[key] = (md["health"].value, md["failed_checks"].value)
    return out


def _tick(defs, instance, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
    result = RERUN_SENSOR.evaluate_tick(ctx)
    return result.run_requests or [], result.cursor


def test_ranged_run_marks_each_shard_and_sensor_reruns_only_failed(tmp_path):
    BAD["bad"] = {"00002", "00004"}
    defs = _defs(tmp_path)
    with dg.instance_for_test() as instance:
        result = _run_range(defs, instance, SHARDS.get_partition_keys())
        assert result.success
        health = _health(instance)
        assert {k for k, (h, _) in health.items() if h == "failed"} == {"00002", "00004"}
        assert "yield 0.1 not >= 0.5" in health["00002"][1]["shard_yield"]
        assert health["00000"] == ("ok", {})

        requests, cursor = _tick(defs, instance)
        assert sorted(r.partition_key for r in requests) == ["00002", "00004"]
        assert all(r.job_name == "rerun_toy_shards" for r in requests)
        assert defs.get_repository_def().get_all_jobs()  # the code location loads as a code server would
        again, cursor = _tick(defs, instance, cursor)
        assert again == []  # nothing new since the last tick: nothing requested twice

        BAD["bad"] = {"00004"}  # shard 2 recovers on its re-run, shard 4 keeps failing
        for key in ("00002", "00004"):
            _run_range(defs, instance, [key])
        retry, cursor = _tick(defs, instance, cursor)
        assert [r.partition_key for r in retry] == ["00004"]
        _run_range(defs, instance, ["00004"])
        capped, cursor = _tick(defs, instance, cursor)
        assert capped == [] and json.loads(cursor)["attempts"]["toy_shards|00004"] == MAX_ATTEMPTS


def test_platform_report_tables(tmp_path):
    BAD["bad"] = {"00001"}
    defs = _defs(tmp_path)
    with dg.instance_for_test() as instance:
        assert _run_range(defs, instance, SHARDS.get_partition_keys()).success
        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(asset_selection=[dg.AssetKey("toy_whole")], instance=instance).success
        report = job.execute_in_process(asset_selection=[dg.AssetKey("platform_report")], instance=instance)
        md = report.asset_materializations_for_node("platform_report")[0].metadata
        assert md["shards"].value == 6 and md["unhealthy_shards"].value == 1
        assert "shard_yield ×1" in md["health"].value and "data:image/png;base64," in md["yield_charts"].value
    shards = pl.read_parquet(tmp_path / "data" / "reports" / "platform" / "shards.parquet")
    assert shards.filter(pl.col("health") == "failed")["partition"].to_list() == ["00001"]
    metrics = pl.read_parquet(tmp_path / "data" / "reports" / "platform" / "metrics.parquet")
    yields = metrics.filter(pl.col("metric") == "image_yield").sort("partition")["value"].to_list()
    assert yields == [0.9, 0.1, 0.9, 0.9, 0.9, 0.9]
    whole = metrics.filter((pl.col("asset") == "toy_whole") & (pl.col("partition") == ""))
    assert dict(zip(whole["metric"], whole["value"])) == {"records": 42.0, "yield": 0.75}
