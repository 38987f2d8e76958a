"""Snapshot of the COYO asset specs: an accidental key, dependency, partition or check change fails here."""

from __future__ import annotations

import json

import dagster as dg

from vila_assets.assets import coyo as coyo_assets

EXPECTED = {
    "coyo_metadata_shard": {"deps": [], "partitioned": True, "checks": []},
    "coyo_selection": {"deps": ["coyo_metadata_shard"], "partitioned": True,
                       "checks": ["enough_rows_pass_gate", "selection_correct"]},
    "coyo_images": {"deps": ["coyo_selection"], "partitioned": True, "checks": ["download_yield"]},
    "coyo_clip_scored": {"deps": ["coyo_images"], "partitioned": True,
                         "checks": ["duplicate_rates_bounded", "fresh_score_distribution"]},
    "coyo_split": {"deps": ["coyo_clip_scored"], "partitioned": False, "checks": ["vila_contract"]},
}


def _graph():
    from vila_assets.resources.config import default_resources

    return dg.Definitions.merge(coyo_assets.defs, dg.Definitions(resources=default_resources())).resolve_asset_graph()


def test_asset_keys_deps_partitions_and_checks_match_the_snapshot():
    graph = _graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(EXPECTED)
    for name, spec in EXPECTED.items():
        node = graph.get(dg.AssetKey(name))
        assert sorted(k.to_user_string() for k in node.parent_keys) == spec["deps"], name
        assert node.is_partitioned == spec["partitioned"], name
        assert node.group_name == "coyo"
        checks = sorted(c.name for c in graph.get_check_keys_for_assets({node.key}))
        assert checks == spec["checks"], name


def test_shard_partitions_are_the_128_real_shards_with_multi_run_backfills():
    pdef = coyo_assets.coyo_shards
    keys = pdef.get_partition_keys()
    assert len(keys) == 128 and keys[0] == "00000" and keys[-1] == "00127"
    for a in coyo_assets.SHARD_ASSETS:
        assert a.partitions_def == pdef
        assert a.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=16)
    assert coyo_assets.coyo_split.partitions_def is None


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


def test_demo_steps_run_the_shards_as_one_range_then_the_split():
    steps = coyo_assets.demo_steps({}, "demo")
    assert [s.assets for s in steps] == [
        ("coyo_metadata_shard", "coyo_selection", "coyo_images", "coyo_clip_scored"),
        ("coyo_split",),
    ]
    assert steps[0].partitions == tuple(f"{i:05d}" for i in range(8))
    assert steps[1].partitions is None and steps[0].order < steps[1].order
