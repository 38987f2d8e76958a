"""Snapshot of the MMC4-core asset specs: an accidental key, dependency, partitioning or check change fails."""

import dagster as dg

from vila_assets.assets import mmc4
from vila_assets.resources.config import default_resources

EXPECTED = {
    "mmc4_annotations": {
        "deps": [],
        "checks": {},
        "resources": ["data_root", "hub", "mmc4_source"],
    },
    "mmc4_images": {
        "deps": ["mmc4_annotations"],
        "checks": {"image_yield_above_threshold": True},
        "resources": ["crawler", "data_root"],
    },
    "mmc4_core_shard": {
        "deps": ["mmc4_annotations", "mmc4_images"],
        "checks": {
            "doc_yield_above_threshold": True,
            "near_duplicate_rate_bounded": False,
            "no_exact_duplicate_images": True,
            "vila_contract": True,
        },
        "resources": ["data_root"],
    },
}


def _snapshot() -> dict:
    defs = dg.Definitions.merge(mmc4.defs, dg.Definitions(resources=default_resources()))
    graph = defs.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = graph.assets_def_for_key(key)
        out[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "checks": {
                spec.name: spec.blocking
                for spec in sorted(assets_def.check_specs, key=lambda s: s.name)
                if spec.asset_key == key
            },
            "resources": sorted(assets_def.required_resource_keys - {"io_manager"}),
            "partitions": node.partitions_def,
            "backfill": node.backfill_policy,
            "group": node.group_name,
        }
    return out


def test_asset_keys_deps_checks_and_resources_are_as_designed():
    snap = _snapshot()
    assert sorted(snap) == sorted(EXPECTED)
    for key, expected in EXPECTED.items():
        got = snap[key]
        assert {k: got[k] for k in expected} == expected, key
        assert got["group"] == "mmc4"


def test_every_asset_is_partitioned_by_dynamic_shards_with_a_multi_run_backfill_policy():
    for key, got in _snapshot().items():
        assert isinstance(got["partitions"], dg.DynamicPartitionsDefinition), key
        assert got["partitions"].name == "mmc4_shards"
        assert got["backfill"] == dg.BackfillPolicy.multi_run(max_partitions_per_run=50), key


def test_sensor_and_family_resources():
    assert [s.name for s in mmc4.defs.sensors] == ["mmc4_shard_sensor"]
    assert mmc4.mmc4_shard_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert set(mmc4.defs.resources) == {"mmc4_source"}
    assert callable(mmc4.demo_steps)
