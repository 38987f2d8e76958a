"""The end-to-end demo: start the sample world, materialize the asset graph on it, print a summary.

Nothing here knows a family. The plan is read off the asset graph:

1. the discovery sensors run once (MMC4's registers the world's shards as dynamic partitions);
2. assets are taken in topological order, in waves: a wave is every asset whose upstream assets are
   done, grouped by asset group and partitions definition and extended along chains of the same group
   and definition, so a whole sharded family (COYO's four shard assets, say) is ONE ranged run, the way
   a backfill with a ``BackfillPolicy`` batches it;
3. each run covers the partition keys the profile names for that group (all keys otherwise), with the
   profile's run config; an asset whose upstream run failed is skipped, not run on stale inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from vila_assets.core.vila_format import write_json
from vila_assets.profiles import Profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedRun:
    """One in-process run: ``assets`` over ``partitions`` (None: unpartitioned) with ``run_config``."""

    assets: tuple[dg.AssetKey, ...]
    partitions: tuple[str, ...] | None = None
    run_config: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        names = ", ".join(a.to_user_string() for a in self.assets)
        if self.partitions:
            span = self.partitions[0] if len(self.partitions) == 1 else f"{self.partitions[0]}..{self.partitions[-1]}"
            return f"{names} [{len(self.partitions)}: {span}]"
        return names


@dataclass
class RunOutcome:
    run: PlannedRun
    success: bool
    skipped: bool = False
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    materializations: int = 0


@dataclass
class DemoSummary:
    data_root: Path
    runs: list[RunOutcome]
    assets: dict[str, dict] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.runs) and all(r.success for r in self.runs)

    def render(self) -> str:
        lines = [f"vila_assets demo — data root {self.data_root}", ""]
        lines.append(f"{'run':<70} {'ok':<5} {'mat':>5} {'checks':>8}")
        for r in self.runs:
            checks = f"{r.checks_passed}/{r.checks_passed + len(r.checks_failed)}"
            ok = "skip" if r.skipped else ("yes" if r.success else "NO")
            lines.append(f"{r.run.name[:70]:<70} {ok:<5} {r.materializations:>5} {checks:>8}")
            for failed in r.checks_failed:
                lines.append(f"    check did not pass: {failed}")
        lines.append("")
        lines.append("assets (partitions materialized; yields):")
        for key, info in sorted(self.assets.items()):
            yields = ", ".join(f"{k}={v}" for k, v in info.get("yields", {}).items())
            lines.append(f"  {key:<40} {info['partitions']:>5}  {yields}")
        playground = self.data_root / "playground" / "data"
        lines.append("")
        lines.append(f"VILA-ready outputs under {playground}:")
        if playground.is_dir():
            for p in sorted(playground.iterdir()):
                lines.append(f"  {p.name}")
        return "\n".join(lines)


# --- planning ---------------------------------------------------------------------------------------------


def discover_partitions(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """Evaluate every sensor that registers dynamic partitions once, and apply what it asks for."""
    resources = dict(defs.resources or {})
    for sensor in defs.sensors or []:
        if isinstance(sensor, dg.AutomationConditionSensorDefinition):
            continue
        with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
            result = sensor(ctx)
        for request in getattr(result, "dynamic_partitions_requests", None) or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def plan_runs(
    defs: dg.Definitions, profile: Profile, instance: dg.DagsterInstance, selection: Iterable[dg.AssetKey] | None = None
) -> list[list[PlannedRun]]:
    """Waves of runs over ``selection`` (default: every asset), in topological order."""
    graph = defs.resolve_asset_graph()
    todo = set(selection or graph.materializable_asset_keys)
    done: set[dg.AssetKey] = set()
    waves = []
    while todo:
        order = _toposorted(graph, todo)
        ready = [k for k in order if _deps_done(graph, k, done, todo)]
        if not ready:
            raise RuntimeError(f"cannot order {sorted(k.to_user_string() for k in todo)}")
        groups: dict[tuple, list[dg.AssetKey]] = {}
        for key in ready:  # two groups' definitions may be equal (128 COYO shards, 128 VFLAN chunks)
            node = graph.get(key)
            groups.setdefault((node.group_name, node.partitions_def), []).append(key)
        for group, keys in groups.items():  # extend each along chains of the same group and definition
            _extend(graph, keys, group, done, todo)
        wave = []
        for (group_name, pdef), keys in groups.items():
            keys = sorted(set(keys), key=order.index)
            wave.append(_planned(keys, group_name, pdef, profile, instance))
            done.update(keys)
        todo -= done
        waves.append(wave)
    return waves


def _toposorted(graph, keys: set[dg.AssetKey]) -> list[dg.AssetKey]:
    order = [k for level in graph.toposorted_asset_keys_by_level for k in sorted(level, key=str)]
    return [k for k in order if k in keys]


def _deps_done(graph, key, done, todo) -> bool:
    return all(p in done or p not in todo for p in graph.get(key).parent_keys)


def _extend(graph, keys: list, group: tuple, done, todo) -> None:
    grew = True
    while grew:
        grew = False
        for key in _toposorted(graph, todo):
            node = graph.get(key)
            if key in keys or key in done or (node.group_name, node.partitions_def) != group:
                continue
            if all(p in done or p not in todo or p in keys for p in graph.get(key).parent_keys):
                keys.append(key)
                grew = True


def _planned(keys: list, group_name: str, pdef, profile: Profile, instance: dg.DagsterInstance) -> PlannedRun:
    config = {k.to_user_string(): {"config": profile.run_config[k.to_user_string()]}
              for k in keys if k.to_user_string() in profile.run_config}
    partitions = None
    if pdef is not None:
        partitions = profile.partitions.get(group_name) or tuple(
            pdef.get_partition_keys(dynamic_partitions_store=instance))
    return PlannedRun(tuple(keys), partitions, {"ops": config} if config else {})


# --- running ----------------------------------------------------------------------------------------------


def execute(defs: dg.Definitions, run: PlannedRun, instance: dg.DagsterInstance) -> RunOutcome:
    job = defs.resolve_implicit_global_asset_job_def()
    tags: dict[str, str] = {"vila_assets/demo": "1"}
    partition_key = None
    if run.partitions and len(run.partitions) == 1:
        partition_key = run.partitions[0]
    elif run.partitions:
        tags["dagster/asset_partition_range_start"] = run.partitions[0]
        tags["dagster/asset_partition_range_end"] = run.partitions[-1]
    log.info("demo: %s", run.name)
    # the console shows warnings and the summary; every event stays in the instance for `dagster dev`
    run_config = {**run.run_config, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    res = job.execute_in_process(
        asset_selection=list(run.assets), partition_key=partition_key, tags=tags,
        run_config=run_config, instance=instance, raise_on_error=False,
    )
    outcome = RunOutcome(run, res.success)
    for ev in res.all_events:
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            outcome.materializations += 1
        elif ev.event_type_value == "ASSET_CHECK_EVALUATION":
            data = ev.event_specific_data
            if data.passed:
                outcome.checks_passed += 1
            else:
                severity = getattr(getattr(data, "severity", None), "value", "ERROR")
                outcome.checks_failed.append(f"{data.asset_key.to_user_string()}:{data.check_name} ({severity.lower()})")
        elif ev.is_failure and ev.message:
            log.error("%s: %s", run.name, ev.message)
    return outcome


def run_graph(defs: dg.Definitions, profile: Profile, instance: dg.DagsterInstance,
              selection: Iterable[dg.AssetKey] | None = None) -> list[RunOutcome]:
    discover_partitions(defs, instance)
    graph = defs.resolve_asset_graph()
    failed: set[dg.AssetKey] = set()
    outcomes = []
    for wave in plan_runs(defs, profile, instance, selection):
        for run in wave:
            upstream = {p for k in run.assets for p in graph.get_ancestor_asset_keys(k) if p not in run.assets}
            if upstream & failed or run.partitions == ():  # an upstream failed, or no partition to run
                outcomes.append(RunOutcome(run, success=False, skipped=True))
                failed.update(run.assets)
                continue
            outcome = execute(defs, run, instance)
            if not outcome.success:
                failed.update(run.assets)
            outcomes.append(outcome)
    return outcomes


def collect_asset_summary(instance: dg.DagsterInstance, defs: dg.Definitions) -> dict[str, dict]:
    """Per asset: how many partitions (or 1) are materialized, and the latest yield-like metadata."""
    out: dict[str, dict] = {}
    graph = defs.resolve_asset_graph()
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if node.is_partitioned:
            n = len(instance.get_materialized_partitions(key))
        else:
            n = 1 if instance.get_latest_materialization_event(key) is not None else 0
        ev = instance.get_latest_materialization_event(key)
        yields = {}
        if ev is not None and ev.asset_materialization is not None:
            for name, value in ev.asset_materialization.metadata.items():
                v = getattr(value, "value", value)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue  # figures only (a chart's markdown is no yield)
                if "yield" in name or name in ("records", "samples", "docs_out", "count"):
                    yields[name] = round(v, 3) if isinstance(v, float) else v
        out[key.to_user_string()] = {"partitions": n, "yields": yields}
    return out


def run_demo(
    data_root: str | Path = "./data",
    *,
    scale: str = "demo",
    seed: int = 0,
    instance: dg.DagsterInstance | None = None,
    groups: list[str] | None = None,
    data_root_resource=None,
    model_cache: str | Path | None = None,
) -> DemoSummary:
    """Start the sample world under ``<data_root>/sample_world`` and materialize the graph on it.

    ``groups`` limits the run to those asset groups (and what they need is expected materialized);
    ``data_root_resource`` replaces the local data root (an ``FsspecDataRoot`` whose working copy is
    ``data_root``)."""
    from vila_assets import definitions
    from vila_assets.profiles import data_root_at
    from vila_assets.sample_world.world import SampleWorld

    data_root = Path(data_root).resolve()
    root = data_root_resource or data_root_at(str(data_root))
    with SampleWorld(data_root / "sample_world", seed=seed, scale=scale, model_cache=model_cache) as world:
        world.info().save(root)
        profile = world.profile(root)
        defs = definitions.build_definitions(profile)
        selection = None
        if groups:
            graph = defs.resolve_asset_graph()
            selection = [k for k in graph.materializable_asset_keys if graph.get(k).group_name in groups]
        instance = instance or dg.DagsterInstance.get()
        outcomes = run_graph(defs, profile, instance, selection)
        summary = DemoSummary(data_root, outcomes, collect_asset_summary(instance, defs))
        root.publish(write_json(root.reports("demo_summary.json"), summary.assets))
        return summary
