"""The demo: planned from the asset graph alone, and run end to end on a test-scale sample world."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from vila_assets.core import vila_format as vf
from vila_assets.definitions import build_definitions
from vila_assets.demo import plan_runs, run_demo
from vila_assets.profiles import production

ROOT = Path(__file__).parents[1]


def _plan(tmp_path):
    profile = production(None)
    defs = build_definitions(profile)
    with dg.DagsterInstance.ephemeral() as instance:
        return plan_runs(defs, profile, instance)


def test_plan_follows_lineage_and_batches_each_sharded_chain_into_one_run(tmp_path):
    waves = _plan(tmp_path)
    position = {}
    for i, wave in enumerate(waves):
        for run in wave:
            for key in run.assets:
                position[key.to_user_string()] = (i, run)
    # every asset is planned exactly once, after all of its upstream assets
    defs = build_definitions(production(None))
    graph = defs.resolve_asset_graph()
    assert set(position) == {k.to_user_string() for k in graph.materializable_asset_keys}
    for key in graph.materializable_asset_keys:
        for parent in graph.get(key).parent_keys:
            assert position[parent.to_user_string()][0] <= position[key.to_user_string()][0]
    # the four COYO shard assets are one ranged run over every shard, as a backfill batches them
    coyo_run = position["coyo_clip_scored"][1]
    assert {a.to_user_string() for a in coyo_run.assets} == {
        "coyo_metadata_shard", "coyo_selection", "coyo_images", "coyo_clip_scored"}
    assert len(coyo_run.partitions) == 128
    # fan-in assets come after what they gather
    assert position["sft_mixture"][0] > position["vflan_chunks"][0]
    assert position["coyo_split"][0] > position["coyo_clip_scored"][0]
    # no MMC4 shard is registered on a fresh instance: the run has no partition to cover
    assert position["mmc4_core_shard"][1].partitions == ()


@pytest.mark.slow
def test_demo_materializes_every_family_on_the_sample_world(tmp_path, dagster_instance, tiny_clip_cache):
    summary = run_demo(tmp_path / "data", scale="test", instance=dagster_instance, model_cache=tiny_clip_cache)
    print(summary.render())
    assert summary.success, summary.render()
    assert not any(r.skipped for r in summary.runs)
    for name in ("mmc4core", "coyo", "vflan"):
        d = vf.registry_path(name, tmp_path / "data")
        assert vf.validate_shard_dir(d) == [], name
        assert vf.loader_shards(d), f"{name}: no shards"
    unmaterialized = [k for k, info in summary.assets.items() if info["partitions"] == 0]
    assert unmaterialized == [], f"assets the demo never materialized: {unmaterialized}"
    # the profile's ranges: 4 COYO shards at test scale, every registered MMC4 shard, all 128 VFLAN chunks
    assert summary.assets["coyo_clip_scored"]["partitions"] == 4
    assert summary.assets["vflan_chunks"]["partitions"] == 128
    assert summary.assets["mmc4_core_shard"]["partitions"] == len(
        dagster_instance.get_dynamic_partitions("mmc4_shards")) > 0
    # the summary holds figures only (the platform report's chart markdown once landed in it)
    not_numbers = {(a, k) for a, info in summary.assets.items() for k, v in info["yields"].items()
                   if not isinstance(v, (int, float))}
    assert not_numbers == set()


@pytest.mark.parametrize("profile", ["production", "sample_world"])
def test_definitions_validate_under_each_profile(tmp_path, profile):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(VILA_PROFILE=profile, VILA_DATA_ROOT=str(tmp_path))
    if profile == "sample_world":  # what `vila-assets world` leaves for the code location to find
        (tmp_path / "sample_world").mkdir()
        (tmp_path / "sample_world" / "world.json").write_text('{"endpoint": "http://127.0.0.1:9", "scale": "test"}')
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "vila_assets.definitions"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_profile_ranges_apply_per_group_even_when_partition_sets_are_equal(tmp_path):
    # COYO's 128 shards and VFLAN's 128 chunks have equal keys: the profile's 4 COYO shards must not
    # shrink the VFLAN run, and the two families never share a run.
    from vila_assets.profiles import WorldInfo, sample_world
    from vila_assets.resources.storage import LocalDataRoot

    profile = sample_world(WorldInfo("http://127.0.0.1:9", "test"), LocalDataRoot(root=str(tmp_path)))
    with dg.DagsterInstance.ephemeral() as instance:
        runs = {a.to_user_string(): run for wave in plan_runs(build_definitions(profile), profile, instance)
                for run in wave for a in run.assets}
    assert len(runs["coyo_images"].partitions) == 4
    assert len(runs["vflan_chunks"].partitions) == 128
    assert runs["vflan_chunks"] is not runs["coyo_images"]
    assert runs["coyo_split"].run_config == {"ops": {"coyo_split": {"config": {"samples_per_part": 32}}}}
