"""The demo flow end to end on a reduced ("test"-scale) sample world, against a test Dagster instance."""

import os
import subprocess
import sys
from pathlib import Path

from vila_assets.core import vila_format as vf
from vila_assets.demo import run_demo

ROOT = Path(__file__).parents[1]


def test_demo_materializes_every_family_on_the_sample_world(tmp_path, dagster_instance):
    summary = run_demo(tmp_path / "data", scale="test", instance=dagster_instance)
    print(summary.render())
    assert summary.success, summary.render()
    assert summary.steps, "the demo ran no step"
    playground = tmp_path / "data" / "playground" / "data"
    # Every sharded VILA output present satisfies the loader contract.
    for name in ("mmc4core", "coyo", "vflan"):
        d = vf.registry_path(name, tmp_path / "data")
        if d.exists():
            assert vf.validate_shard_dir(d) == [], name
            assert vf.loader_shards(d), f"{name}: no shards"
    assert playground.is_dir()
    unmaterialized = [k for k, info in summary.assets.items() if info["partitions"] == 0]
    assert unmaterialized == [], f"assets the demo never materialized: {unmaterialized}"


def test_definitions_validate_lists_every_family():
    # A DAGSTER_HOME from the caller's shell may not exist; validation needs no instance of its own.
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "vila_assets.definitions"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_every_family_contributes_assets():
    from vila_assets import definitions

    keys = {k.to_user_string() for k in definitions.defs.resolve_asset_graph().get_all_asset_keys()}
    for family_asset in ("llava_cc3m_595k", "llava_mix665k", "mmc4_core_shard", "coyo_split",
                         "vflan_chunks", "sharegpt4v_filtered", "sft_mixture"):
        assert family_asset in keys
