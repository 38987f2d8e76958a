"""Snapshot of the MMC4-core asset specs: an accidental key, dependency, partitioning, check or config
change fails."""

import dagster as dg
import pytest

from vila_assets.assets import mmc4
from vila_assets.assets.mmc4.config import AnnotationsConfig, CoreShardConfig, ImagesConfig
from vila_assets.definitions import build_definitions
from vila_assets.profiles import production
from vila_assets.resources.storage import LocalDataRoot

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
            "usable_at_train_world_size": False,
            "vila_contract": True,
        },
        "resources": ["data_policy", "data_root"],
    },
}


@pytest.fixture(scope="module")
def location(tmp_path_factory) -> dg.Definitions:
    """The whole production code location (resources from the profile, not from the family)."""
    return build_definitions(production(LocalDataRoot(root=str(tmp_path_factory.mktemp("mmc4-spec")))))


def _snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    family = {a.key for a in mmc4.defs.assets}
    out = {}
    for key in sorted(family, key=lambda k: k.to_user_string()):
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


def test_asset_keys_deps_checks_and_resources_are_as_designed(location):
    snap = _snapshot(location)
    assert sorted(snap) == sorted(EXPECTED)
    for key, expected in EXPECTED.items():
        got = snap[key]
        assert {k: got[k] for k in expected} == expected, key
        assert got["group"] == "mmc4"


def test_every_asset_is_partitioned_by_dynamic_shards_with_a_multi_run_backfill_policy(location):
    for key, got in _snapshot(location).items():
        assert isinstance(got["partitions"], dg.DynamicPartitionsDefinition), key
        assert got["partitions"].name == "mmc4_shards"
        assert got["backfill"] == dg.BackfillPolicy.multi_run(max_partitions_per_run=500), key


def test_sensor_in_the_family_and_source_in_the_profile(location):
    assert [s.name for s in mmc4.defs.sensors] == ["mmc4_shard_sensor"]
    assert mmc4.mmc4_shard_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "mmc4_shard_sensor" in {s.name for s in location.sensors}
    assert not mmc4.defs.resources  # sources are the profile's, visible in the launchpad
    source = location.resources["mmc4_source"]
    assert isinstance(source, mmc4.Mmc4Source)
    assert (source.location, source.revision) == ("hf:jmhessel/mmc4-core-ff", "main")


def test_check_thresholds_are_run_config_with_production_defaults():
    assert AnnotationsConfig().strict is False
    assert ImagesConfig().recrawl is False and ImagesConfig().checks.min_image_yield == 0.4
    core = CoreShardConfig()
    assert core.keep_partial_docs is True and core.dedup_images is True  # curated's switches
    assert (core.checks.min_doc_yield, core.checks.near_duplicate_distance, core.checks.max_near_duplicate_rate,
            core.checks.min_usable_share) == (0.15, 3, 0.1, 0.95)
    images_fields = mmc4.mmc4_images.op.config_schema.as_field().config_type.fields
    assert set(images_fields) == {"recrawl", "checks"}
    assert set(images_fields["checks"].config_type.fields) == {"min_image_yield"}


def test_sensor_adds_new_shards_and_keeps_vanished_ones_with_a_report(tmp_path):
    """A local-directory source: new shard files become partitions; a registered shard whose file is gone
    is kept and named, never removed silently."""
    from vila_assets.assets.mmc4 import Mmc4Source, mmc4_shard_sensor, mmc4_shards
    from vila_assets.resources.hub import HubClient

    for n in (0, 2):
        (tmp_path / f"docs_no_face_shard_{n}_v3.jsonl").write_text("")
    resources = {"hub": HubClient(), "mmc4_source": Mmc4Source(location=str(tmp_path))}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(mmc4_shards.name, ["00000", "00001"])  # 00001 is not in the source
        result = mmc4_shard_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        (request,) = result.dynamic_partitions_requests
        assert list(request.partition_keys) == ["00002"]
        instance.add_dynamic_partitions(mmc4_shards.name, ["00002"])
        again = mmc4_shard_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(again, dg.SkipReason)
        assert "none new" in again.skip_message and "no longer in the source" in again.skip_message
        assert "00001" in again.skip_message
        assert instance.get_dynamic_partitions(mmc4_shards.name) == ["00000", "00001", "00002"]
