"""Snapshot of the COYO asset specs: an accidental key, dependency, partition, check or config change fails here."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from vila_assets.assets import coyo
from vila_assets.assets.coyo import assets as coyo_assets
from vila_assets.assets.coyo.partitions import COYO_BACKFILL, coyo_shards

EXPECTED = {
    "coyo_metadata_shard": {"deps": [], "partitioned": True, "checks": {}},
    "coyo_selection": {"deps": ["coyo_metadata_shard"], "partitioned": True,
                       "checks": {"enough_rows_pass_gate": False, "ids_unique": False, "selection_correct": True}},
    "coyo_images": {"deps": ["coyo_selection"], "partitioned": True, "checks": {"download_yield": False}},
    "coyo_clip_scored": {"deps": ["coyo_images"], "partitioned": True,
                         "checks": {"duplicate_rates_bounded": False, "fresh_score_distribution": True}},
    "coyo_split": {"deps": ["coyo_clip_scored"], "partitioned": False,
                   "checks": {"vila_contract": True, "train_world_size": False}},
}
RESOURCES = {
    "coyo_metadata_shard": {"data_root", "hub", "coyo_source"},
    "coyo_selection": {"data_root", "hub", "data_policy"},
    "coyo_images": {"data_root", "crawler"},
    "coyo_clip_scored": {"data_root", "clip", "data_policy"},
    "coyo_split": {"data_root", "data_policy"},
}


def _defs(profile) -> dg.Definitions:
    return dg.Definitions.merge(coyo.defs, dg.Definitions(resources=profile.resources))


def test_asset_keys_deps_partitions_and_checks_match_the_snapshot(tmp_path):
    from vila_assets.profiles import production
    from vila_assets.resources.storage import LocalDataRoot

    graph = _defs(production(LocalDataRoot(root=str(tmp_path)))).resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(EXPECTED)
    for name, spec in EXPECTED.items():
        node = graph.get(dg.AssetKey(name))
        assert sorted(k.to_user_string() for k in node.parent_keys) == spec["deps"], name
        assert node.is_partitioned == spec["partitioned"], name
        assert node.group_name == "coyo"
        asset = next(a for a in coyo_assets.ASSETS if a.key == node.key)
        assert {c.name: c.blocking for c in asset.check_specs} == spec["checks"], name
        assert asset.required_resource_keys - {"io_manager"} == RESOURCES[name], name


def test_enough_rows_pass_gate_reports_upstream_data_as_a_warning():
    from vila_assets.assets.coyo.checks import CHECKS_BY_NAME

    assert CHECKS_BY_NAME["enough_rows_pass_gate"].severity == dg.AssetCheckSeverity.WARN
    assert CHECKS_BY_NAME["ids_unique"].severity == dg.AssetCheckSeverity.WARN
    assert CHECKS_BY_NAME["train_world_size"].severity == dg.AssetCheckSeverity.WARN  # vila's layout loses by design
    # duplicate rates are non-blocking but still an ERROR when they fail
    assert CHECKS_BY_NAME["duplicate_rates_bounded"].severity == dg.AssetCheckSeverity.ERROR


def test_shard_partitions_are_the_128_real_shards_with_multi_run_backfills():
    keys = coyo_shards.get_partition_keys()
    assert len(keys) == 128 and keys[0] == "00000" and keys[-1] == "00127"
    assert COYO_BACKFILL == dg.BackfillPolicy.multi_run(max_partitions_per_run=16)
    for a in coyo_assets.SHARD_ASSETS:
        assert a.partitions_def == coyo_shards
        assert a.backfill_policy == COYO_BACKFILL
    assert coyo_assets.coyo_split.partitions_def is None


def test_run_config_holds_no_source_or_threshold_and_check_thresholds_are_nested():
    """Sources are the coyo_source resource, the fresh threshold is the clip resource's min_fresh_score."""
    def fields(asset) -> set[str]:
        schema = asset.op.config_schema
        return set(getattr(schema.config_type, "fields", {})) if schema is not None else set()

    assert fields(coyo_assets.coyo_metadata_shard) == set()
    assert fields(coyo_assets.coyo_clip_scored) == {"batch_rows", "checks"}
    checks = coyo_assets.coyo_clip_scored.op.config_schema.config_type.fields["checks"].config_type.fields
    assert set(checks) == {"max_exact_duplicate_rate", "max_near_duplicate_rate", "max_unscorable_rate"}
    assert fields(coyo_assets.coyo_images) == {"checks"}
    assert fields(coyo_assets.coyo_split) == {"samples_per_part", "checks"}


def test_scoring_step_runs_in_the_gpu_pool_and_asks_k8s_for_a_gpu():
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    scored = coyo_assets.coyo_clip_scored
    assert scored.op.pool == "gpu"
    assert all(a.op.pool is None for a in coyo_assets.ASSETS if a is not scored)
    tags = scored.op.tags
    assert json.loads(tags["dagster-k8s/config"])["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    user_config = get_user_defined_k8s_config(tags)
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="vila-assets:test", dagster_home="/opt/dagster/dagster_home",
                            instance_config_map="dagster-instance"),
        ["dagster", "api", "execute_step"],
        "coyo-clip-scored-step",
        user_config,
    )
    container = job.spec.template.spec.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    # The other shard steps stay CPU-only pods.
    plain = get_user_defined_k8s_config(coyo_assets.coyo_selection.op.tags)
    assert "resources" not in plain.container_config


@pytest.mark.parametrize("scale, shards", [("test", 4), ("demo", 8)])
def test_demo_runs_the_shards_as_one_range_then_the_split(tmp_path, dagster_instance, scale, shards):
    """The demo reads the plan off the graph: the four shard assets are one ranged run, then the split with
    the sample world's small parts."""
    from vila_assets.demo import plan_runs
    from vila_assets.profiles import WorldInfo, sample_world
    from vila_assets.resources.storage import LocalDataRoot

    profile = sample_world(WorldInfo("http://127.0.0.1:9", scale), LocalDataRoot(root=str(tmp_path)))
    waves = plan_runs(_defs(profile), profile, dagster_instance)
    runs = [run for wave in waves for run in wave]
    assert [tuple(a.to_user_string() for a in r.assets) for r in runs] == [
        ("coyo_metadata_shard", "coyo_selection", "coyo_images", "coyo_clip_scored"),
        ("coyo_split",),
    ]
    assert runs[0].partitions == tuple(f"{i:05d}" for i in range(shards))
    assert runs[1].partitions is None
    assert runs[1].run_config == {"ops": {"coyo_split": {"config": {"samples_per_part": 32}}}}
