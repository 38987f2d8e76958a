"""Re-run only the shards whose checks failed.

A ranged run records one check result for its whole range (Dagster 1.13), but ``ShardedRun`` marks each
shard's own partition with ``health``. This sensor (STOPPED by default: a team decides whether failed
shards retry on their own; "Test sensor" in the UI shows what it would launch) reads the materializations
that are new since its last tick and requests one single-partition run per shard whose latest
materialization is unhealthy, at most ``MAX_ATTEMPTS`` times per shard and ``MAX_RUNS_PER_TICK`` runs per
tick. Shards that fail because their run failed are Dagster's own "failed" partitions: the backfill dialog's
"failed and missing" option re-runs those.
"""

from __future__ import annotations

import json

import dagster as dg

from vila_assets.assets.platform.shard_health import iter_materializations, latest_by_partition

MAX_ATTEMPTS = 2
MAX_RUNS_PER_TICK = 25


def _load(cursor: str | None) -> dict:
    state = json.loads(cursor) if cursor else {}
    return {"after": state.get("after", {}), "attempts": state.get("attempts", {}), "pending": state.get("pending", [])}


def unhealthy_requests(instance: dg.DagsterInstance, asset_keys: list[dg.AssetKey], state: dict) -> list[dict]:
    """Update ``state`` with what is new and return the shards to re-run: ``{asset, partition, attempt}``."""
    pending = {(p["asset"], p["partition"]): p for p in state["pending"]}
    for key in asset_keys:
        name = key.to_user_string()
        new = list(iter_materializations(instance, key, state["after"].get(name)))
        if not new:
            continue
        state["after"][name] = new[-1].storage_id
        for part, shard in latest_by_partition(new).items():
            slot = f"{name}|{part}"
            if shard.failed and state["attempts"].get(slot, 0) < MAX_ATTEMPTS:
                pending[(name, part)] = {"asset": name, "partition": part, "storage_id": shard.storage_id}
            else:
                pending.pop((name, part), None)
                if not shard.failed:
                    state["attempts"].pop(slot, None)
    state["pending"] = list(pending.values())
    return state["pending"]


def rerun_unhealthy_shards(asset_keys: list[dg.AssetKey]) -> tuple[dg.SensorDefinition, list]:
    """The sensor over ``asset_keys`` (the sharded assets) and one asset job per asset that it launches
    (an asset job spans one partitions definition, and the families' differ)."""
    jobs = {key: dg.define_asset_job(f"rerun_{key.to_python_identifier()}", selection=[key]) for key in asset_keys}

    @dg.sensor(name="rerun_unhealthy_shards", minimum_interval_seconds=120, jobs=list(jobs.values()),
               default_status=dg.DefaultSensorStatus.STOPPED,
               description="Requests single-shard re-runs of shards whose latest materialization failed a check.")
    def sensor(context: dg.SensorEvaluationContext):
        state = _load(context.cursor)
        todo = unhealthy_requests(context.instance, list(jobs), state)
        requests = []
        for item in todo[:MAX_RUNS_PER_TICK]:
            slot = f"{item['asset']}|{item['partition']}"
            attempt = state["attempts"].get(slot, 0) + 1
            state["attempts"][slot] = attempt
            requests.append(dg.RunRequest(
                run_key=f"{slot}|{item['storage_id']}", partition_key=item["partition"],
                job_name=jobs[dg.AssetKey.from_user_string(item["asset"])].name,
                tags={"vila/rerun_of": str(item["storage_id"]), "vila/attempt": str(attempt)}))
        state["pending"] = todo[MAX_RUNS_PER_TICK:]
        context.update_cursor(json.dumps(state, sort_keys=True))
        if not requests:
            return dg.SkipReason("no unhealthy shard to re-run")
        return requests

    return sensor, list(jobs.values())
