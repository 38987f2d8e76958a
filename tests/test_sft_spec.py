"""Snapshot of the instruction/alignment asset specs: an accidental key, dependency, partitioning, group or
check change fails here (update the snapshot on purpose when the lineage really changes)."""

import dagster as dg
import pytest

from vila_assets.definitions import build_definitions
from vila_assets.demo import plan_runs
from vila_assets.profiles import production

SNAPSHOT = {
    "sft_image_roots": {"group": "llava", "deps": ["llava_mix665k", "sharegpt4v_filtered"], "partitioned": True,
                        "automated": None, "checks": {"coverage": False}},
    "llava_cc3m_595k": {"group": "llava", "deps": [], "partitioned": False, "automated": None,
                        "checks": {"counts": False, "images_decode": False, "images_present": False,
                                   "no_identical_conversations": False, "schema": True}},
    "llava_mix665k": {"group": "llava", "deps": [], "partitioned": False, "automated": None,
                      "checks": {"counts": False, "no_identical_conversations": False, "schema": True}},
    "sharegpt4v_filtered": {"group": "sharegpt4v", "deps": ["llava_mix665k"], "partitioned": False, "automated": None,
                            "checks": {"counts": False, "images_present": False, "no_identical_conversations": False,
                                       "no_rule_violations": False, "recombination": False, "schema": True,
                                       "yield_per_rule": False}},
    "sft_mixture": {"group": "sft", "deps": ["llava_mix665k", "sharegpt4v_filtered", "vflan_chunks"], "partitioned": False,
                    "automated": "eager, not mid-backfill",
                    "checks": {"components_current": True, "registry_paths_exist": False}},
}


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    """The whole code location (production profile; nothing is run)."""
    from vila_assets.profiles import data_root_at

    return build_definitions(production(data_root_at(str(tmp_path_factory.mktemp("root")))))


def test_asset_specs_match_the_snapshot(defs):
    graph = defs.resolve_asset_graph()
    got = {}
    for name in SNAPSHOT:
        node = graph.get(dg.AssetKey(name))
        cond = node.automation_condition
        specs = {s.key.name: s.blocking for s in node.assets_def.check_specs if s.asset_key == node.key}
        got[name] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": node.is_partitioned,
            "automated": cond.get_label() if cond is not None else None,
            "checks": specs,  # name -> blocking
        }
    assert got == SNAPSHOT


def test_sft_mixture_fans_in_every_vflan_chunk(defs):
    graph = defs.resolve_asset_graph()
    mapping = graph.get_partition_mapping(dg.AssetKey("sft_mixture"), dg.AssetKey("vflan_chunks"))
    assert isinstance(mapping, dg.AllPartitionMapping)
    assert len(graph.get(dg.AssetKey("vflan_chunks")).partitions_def.get_partition_keys()) == 128


def test_the_automation_sensor_runs_by_default_and_targets_the_mixture(defs):
    sensors = [s for s in defs.sensors if isinstance(s, dg.AutomationConditionSensorDefinition)]
    assert sensors and all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)
    graph = defs.resolve_asset_graph()
    targeted = set().union(*(s.asset_selection.resolve(graph) for s in sensors))
    assert dg.AssetKey("sft_mixture") in targeted


def test_the_demo_runs_the_mixture_after_all_its_components(defs):
    """The demo's plan comes from the graph: the mixture waits for VFLAN and ShareGPT4V (a later wave);
    ShareGPT4V comes after mix665k (a chain of unpartitioned assets may share a run, in dependency order), and
    the image roots after both, since they fetch what the two files reference."""
    with dg.instance_for_test() as instance:
        waves = plan_runs(defs, production(), instance)
    wave_of = {key.to_user_string(): i for i, wave in enumerate(waves) for run in wave for key in run.assets}
    assert wave_of["sft_mixture"] > max(wave_of[a] for a in ("vflan_chunks", "llava_mix665k", "sharegpt4v_filtered"))
    order = [key.to_user_string() for wave in waves for run in wave for key in run.assets]
    assert order.index("llava_mix665k") < order.index("sharegpt4v_filtered") < order.index("sft_image_roots")
