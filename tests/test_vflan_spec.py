"""Snapshot of the vflan asset specs: a changed key, dependency, partition set or check fails here.

The SFT mixture (another family) depends on ``vflan_chunks`` by key; VILA reads the chunk directory by path.
"""

from __future__ import annotations

import dagster as dg

from vila_assets.assets import vflan as vflan_assets

EXPECTED = {
    "flan_1m": {
        "deps": [],
        "partitions": None,
        "backfill": None,
        "group": "vflan",
        "checks": [("flan_folders_present", False), ("flan_sample_size", False)],
    },
    "m3it_tasks": {
        "deps": [],
        "partitions": None,
        "backfill": None,
        "group": "vflan",
        "checks": [("m3it_invalid_records", False), ("m3it_tasks_present", False)],
    },
    "vflan_chunks": {
        "deps": ["flan_1m", "m3it_tasks"],
        "partitions": ["00000", "00127", 128],
        "backfill": "single_run",
        "group": "vflan",
        "checks": [
            ("vflan_counts", False),
            ("vflan_duplicates", False),
            ("vflan_loader_contract", True),
            ("vflan_record_schema", True),
        ],
    },
}


def _snapshot() -> dict:
    out = {}
    for asset in vflan_assets.defs.assets:
        assert isinstance(asset, dg.AssetsDefinition)
        (spec,) = asset.specs
        keys = spec.partitions_def.get_partition_keys() if spec.partitions_def else None
        policy = asset.backfill_policy
        out[spec.key.to_user_string()] = {
            "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
            "partitions": [keys[0], keys[-1], len(keys)] if keys else None,
            "backfill": None if policy is None else ("single_run" if policy == dg.BackfillPolicy.single_run() else repr(policy)),
            "group": spec.group_name,
            "checks": sorted((c.name, c.blocking) for c in asset.check_specs),
        }
    return out


def test_asset_specs_snapshot():
    assert _snapshot() == EXPECTED


def test_demo_runs_flan_and_m3it_then_every_chunk_in_one_ranged_run():
    steps = vflan_assets.demo_steps({}, "demo")
    assert [(s.assets, s.order) for s in steps] == [(("flan_1m", "m3it_tasks"), 20), (("vflan_chunks",), 20)]
    assert steps[1].partitions == tuple(f"{i:05d}" for i in range(128))
