"""Running assets in tests and reading what the run said: one copy for every test module."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import dagster as dg

from vila_assets.definitions import build_definitions
from vila_assets.profiles import Profile, data_root_at


def profile_for(world, root: str | Path, **resources) -> Profile:
    """The sample-world profile of ``world`` over the local data root ``root``, with ``resources``
    replaced (``data_root=FsspecDataRoot(...)`` included)."""
    profile = world.profile(resources.get("data_root") or data_root_at(str(root)))
    return Profile(profile.name, {**profile.resources, **resources}, profile.partitions, profile.run_config)


def defs_for(world, root: str | Path, **resources) -> dg.Definitions:
    """The whole code location on the sample world, outputs under ``root``."""
    return build_definitions(profile_for(world, root, **resources))


def run(defs: dg.Definitions, instance: dg.DagsterInstance, assets: Iterable[str],
        keys: Sequence[str] | None = None, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """One in-process run of ``assets`` over partition ``keys`` (one key, or first..last as a range)."""
    job = defs.resolve_implicit_global_asset_job_def()
    tags, partition_key = {}, None
    if keys and len(keys) == 1:
        partition_key = keys[0]
    elif keys:
        tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    return job.execute_in_process(
        asset_selection=[dg.AssetKey.from_user_string(a) for a in assets], partition_key=partition_key,
        tags=tags, run_config=run_config, instance=instance, raise_on_error=False,
    )


def op_config(asset: str, **config) -> dict:
    """Run config for one asset's op."""
    return {"ops": {asset: {"config": config}}}


def materializations(result) -> dict[str, dict]:
    """Latest run-level metadata per asset key string."""
    out = {}
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            m = ev.event_specific_data.materialization
            if m.partition is None or m.metadata:
                out.setdefault(m.asset_key.to_user_string(), {}).update(
                    {k: getattr(v, "value", v) for k, v in m.metadata.items()})
    return out


def check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    """``"asset:check"`` -> its evaluation (``.passed``, ``.severity``, ``.description``, ``.metadata``)."""
    return {
        f"{ev.event_specific_data.asset_key.to_user_string()}:{ev.event_specific_data.check_name}": ev.event_specific_data
        for ev in result.all_events
        if ev.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def checks_passed(result) -> dict[str, bool]:
    return {k: v.passed for k, v in check_results(result).items()}


def partition_metadata(instance: dg.DagsterInstance, asset: str, key: str) -> dict:
    """The metadata of the latest materialization of ``asset`` partition ``key``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_user_string(asset), asset_partitions=[key]), limit=1
    ).records
    if not records:
        return {}
    m = records[0].asset_materialization
    return {k: getattr(v, "value", v) for k, v in m.metadata.items()}


def failure_text(result) -> str:
    """Every failure message of a run, with the error (and a dg.Failure's description) behind it."""
    out = []
    for ev in result.all_events:
        if not ev.is_failure:
            continue
        out.append(ev.message or "")
        data = getattr(ev, "step_failure_data", None) if ev.is_step_failure else None
        if data is not None:
            if data.error is not None:
                out.append(data.error.to_string())
            if data.user_failure_data is not None:
                out.append(data.user_failure_data.description or "")
    return "\n".join(out)
