"""Snapshot of the instruction/alignment asset specs: an accidental key, dependency, partitioning, group or
check change fails here (update the snapshot on purpose when the lineage really changes)."""

import dagster as dg

from vila_assets.assets import llava, sft_mixture, sharegpt4v, vflan
from vila_assets.resources.config import default_resources

SNAPSHOT = {
    "sft_image_roots": {"group": "llava", "deps": [], "partitioned": False, "automated": None,
                        "checks": []},
    "llava_cc3m_595k": {"group": "llava", "deps": [], "partitioned": False, "automated": None,
                        "checks": ["cc3m_images_decode", "counts", "images_present", "no_identical_conversations", "schema"]},
    "llava_mix665k": {"group": "llava", "deps": ["sft_image_roots"], "partitioned": False, "automated": None,
                      "checks": ["counts", "images_present", "no_identical_conversations", "schema"]},
    "sharegpt4v_filtered": {"group": "sharegpt4v", "deps": ["llava_mix665k"], "partitioned": False, "automated": None,
                            "checks": ["counts", "images_present", "no_identical_conversations", "no_rule_violations",
                                       "recombination", "schema", "yield_per_rule"]},
    "sft_mixture": {"group": "sft", "deps": ["llava_mix665k", "sharegpt4v_filtered", "vflan_chunks"], "partitioned": False,
                    "automated": "eager, not mid-backfill", "checks": ["components_current", "registry_paths_exist"]},
}


def _defs():
    return dg.Definitions.merge(llava.defs, sharegpt4v.defs, vflan.defs, sft_mixture.defs,
                                dg.Definitions(resources=default_resources()))


def test_asset_specs_match_the_snapshot():
    graph = _defs().resolve_asset_graph()
    got = {}
    for name in SNAPSHOT:
        node = graph.get(dg.AssetKey(name))
        cond = node.automation_condition
        got[name] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": node.is_partitioned,
            "automated": cond.get_label() if cond is not None else None,
            "checks": sorted(c.name for c in node.check_keys),
        }
    assert got == SNAPSHOT


def test_sft_mixture_fans_in_every_vflan_chunk():
    graph = _defs().resolve_asset_graph()
    mapping = graph.get_partition_mapping(dg.AssetKey("sft_mixture"), dg.AssetKey("vflan_chunks"))
    assert isinstance(mapping, dg.AllPartitionMapping)
    assert len(graph.get(dg.AssetKey("vflan_chunks")).partitions_def.get_partition_keys()) == 128


def test_the_automation_sensor_runs_by_default_and_targets_the_mixture(monkeypatch):
    from vila_assets import definitions

    # the real build_definitions, limited to these families (others may be mid-change in parallel work)
    monkeypatch.setattr(definitions, "family_modules", lambda: [llava, sharegpt4v, sft_mixture, vflan])
    defs = definitions.build_definitions()
    sensors = [s for s in defs.sensors if isinstance(s, dg.AutomationConditionSensorDefinition)]
    assert sensors and all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)
    graph = defs.resolve_asset_graph()
    targeted = set().union(*(s.asset_selection.resolve(graph) for s in sensors))
    assert dg.AssetKey("sft_mixture") in targeted


def test_demo_steps_order_after_vflan():
    steps = {s.name: s for m in (llava, sharegpt4v, sft_mixture) for s in m.demo_steps({}, "demo")}
    vflan_order = max(s.order for s in vflan.demo_steps({}, "demo"))
    assert steps["sft: mixture manifest + registry"].order > vflan_order
    assert all(s.order < vflan_order for n, s in steps.items() if not n.startswith("sft:"))
