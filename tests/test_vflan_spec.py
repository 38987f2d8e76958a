"""Snapshot of the vflan asset specs: a changed key, dependency, partition set, check, resource or run-config
field fails here.

The SFT mixture (another family) depends on ``vflan_chunks`` by key; VILA reads the chunk directory by path.
"""

from __future__ import annotations

import dagster as dg

from vila_assets.assets import vflan as vflan_assets
from vila_assets.assets.vflan import checks
from vila_assets.assets.vflan.sources import FlanSource, M3itSource
from vila_assets.assets.vflan.layout import VflanLayout
from vila_assets.core.vila_format import registry_path
from vila_assets.demo import plan_runs
from vila_assets.profiles import Profile
from vila_assets.resources.hub import HubClient
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import LocalDataRoot

EXPECTED = {
    "flan_1m": {
        "deps": [],
        "partitions": None,
        "backfill": None,
        "group": "vflan",
        "checks": [("folders_present", False, "WARN"), ("sample_size", False, "ERROR")],
        "resources": ["data_policy", "data_root", "flan_source", "hub"],
        "config": [],
    },
    "m3it_tasks": {
        "deps": [],
        "partitions": None,
        "backfill": None,
        "group": "vflan",
        "checks": [("invalid_records", False, "WARN"), ("tasks_present", False, "ERROR")],
        "resources": ["data_policy", "data_root", "hub", "m3it_source"],
        "config": ["checks"],
    },
    "vflan_chunks": {
        "deps": ["flan_1m", "m3it_tasks"],
        "partitions": ["00000", "00127", 128],
        "backfill": "single_run",
        "group": "vflan",
        "checks": [
            ("counts", False, "ERROR"),
            ("duplicates", False, "WARN"),
            ("loader_contract", True, "ERROR"),
            ("record_schema", True, "ERROR"),
            ("train_world_size", False, "WARN"),
        ],
        "resources": ["data_policy", "data_root"],
        "config": ["checks", "seed"],
    },
}


def _severity(check: str) -> str:
    every = {c.name: c for group in (checks.FLAN_CHECKS, checks.M3IT_CHECKS, checks.CHUNK_CHECKS) for c in group}
    return every[check].severity.value


def _snapshot() -> dict:
    out = {}
    for asset in vflan_assets.defs.assets:
        assert isinstance(asset, dg.AssetsDefinition)
        (spec,) = asset.specs
        key = spec.key.to_user_string()
        keys = spec.partitions_def.get_partition_keys() if spec.partitions_def else None
        policy = asset.backfill_policy
        config = asset.op.config_schema.config_type
        out[key] = {
            "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
            "partitions": [keys[0], keys[-1], len(keys)] if keys else None,
            "backfill": None if policy is None else ("single_run" if policy == dg.BackfillPolicy.single_run() else repr(policy)),
            "group": spec.group_name,
            "checks": sorted((c.name, c.blocking, _severity(c.name)) for c in asset.check_specs),
            "resources": sorted(asset.required_resource_keys - {"io_manager"}),
            "config": sorted(config.fields) if config is not None and hasattr(config, "fields") else [],
        }
    return out


def test_asset_specs_snapshot():
    assert _snapshot() == EXPECTED


def test_check_thresholds_are_run_config_with_production_defaults():
    from vila_assets.assets.vflan.config import M3itConfig, VflanChunksConfig

    assert M3itConfig().checks.max_invalid_fraction == 0.05
    assert VflanChunksConfig().checks.max_duplicate_fraction == 0.05 and VflanChunksConfig().seed == 1


def test_layout_puts_chunks_at_vilas_registry_path_and_the_rest_beside_it(tmp_path):
    layout = VflanLayout(LocalDataRoot(root=str(tmp_path)))
    assert layout.chunks_dir == registry_path("vflan", tmp_path)
    assert layout.chunk_count(7) == layout.chunks_dir / "part-00007.count"
    others = [layout.shuffle_plan, layout.chunk_manifests, layout.m3it_invalid, layout.spill("run"),
              *layout.per_file_outputs("text_flan_1m")]
    assert all(layout.chunks_dir not in p.parents and p.is_relative_to(tmp_path) for p in others)
    assert len(set(others)) == len(others)


def test_demo_runs_flan_and_m3it_then_every_chunk_in_one_ranged_run(tmp_path):
    resources = {"data_root": LocalDataRoot(root=str(tmp_path)), "hub": HubClient(), "flan_source": FlanSource(),
                 "m3it_source": M3itSource(), "data_policy": DataPolicy()}
    defs = dg.Definitions.merge(vflan_assets.defs, dg.Definitions(resources=resources))
    with dg.instance_for_test() as instance:
        waves = plan_runs(defs, Profile("production-like", resources), instance)
    runs = [(sorted(a.to_user_string() for a in r.assets), r.partitions) for wave in waves for r in wave]
    assert runs == [(["flan_1m", "m3it_tasks"], None), (["vflan_chunks"], tuple(vflan_assets.CHUNK_KEYS))]
    assert vflan_assets.CHUNK_KEYS == [f"{i:05d}" for i in range(128)]


def test_sources_default_to_the_real_repos_and_take_any_location():
    assert (FlanSource().location, FlanSource().revision) == ("Open-Orca/FLAN", "main")
    assert M3itSource().location == "MMInstruction/M3IT"
    assert M3itSource(location="s3://bucket/m3it").location == "s3://bucket/m3it"
