"""Snapshot of every asset spec (key, deps, partitions, backfill policy, checks, tags, pool, kinds,
automation condition), as dagster-open-platform keeps one: an accidental key or dependency change fails
here, and an intended one is a reviewed diff of ``tests/snapshots/asset_specs.json``.

Regenerate after an intended change: ``UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_asset_specs.py``.
"""

import json
import os
from pathlib import Path

import dagster as dg

from vila_assets.definitions import build_definitions
from vila_assets.profiles import production

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_specs.json"


def _partitions(pdef) -> dict | None:
    if pdef is None:
        return None
    if isinstance(pdef, dg.DynamicPartitionsDefinition):
        return {"type": "dynamic", "name": pdef.name}
    keys = pdef.get_partition_keys()
    return {"type": type(pdef).__name__, "count": len(keys), "first": keys[0], "last": keys[-1]}


def _backfill(policy) -> str | None:
    if policy is None:
        return None
    return f"{policy.policy_type.value}:{policy.max_partitions_per_run}"


def _json_tags(tags) -> dict:
    return {k: (v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in sorted((tags or {}).items())}


def asset_specs() -> dict:
    defs = build_definitions(production())
    graph = defs.resolve_asset_graph()
    out = {}
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = node.assets_def
        spec = next(s for s in assets_def.specs if s.key == key)
        checks = sorted(
            (c.name, c.blocking) for c in assets_def.check_specs if c.asset_key == key
        )
        cond = node.automation_condition
        out[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": _backfill(node.backfill_policy),
            "checks": [{"name": n, "blocking": b} for n, b in checks],
            "kinds": sorted(spec.kinds),
            "tags": _json_tags(spec.tags),
            "op_tags": _json_tags(assets_def.op.tags),
            "pool": assets_def.op.pool,
            "automation_condition": cond.get_label() or type(cond).__name__ if cond is not None else None,
            "resources": sorted(assets_def.required_resource_keys),
        }
    return out


def test_asset_specs_match_the_snapshot():
    current = asset_specs()
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(text)
    recorded = json.loads(SNAPSHOT.read_text())
    changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    assert not changed, f"asset specs changed for {changed}; if intended, regenerate the snapshot (see docstring)"


def test_every_check_of_every_asset_follows_one_convention():
    """Checks are declared on their asset (check_specs), never as separate check ops."""
    defs = build_definitions(production())
    graph = defs.resolve_asset_graph()
    separate = [c.key.to_user_string() for c in graph.asset_check_keys
                if not graph.get(c.asset_key).assets_def.check_specs
                or c not in {s.key for s in graph.get(c.asset_key).assets_def.check_specs}]
    assert separate == []
    assert graph.asset_check_keys, "no checks at all"
