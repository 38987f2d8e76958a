"""The end-to-end demo: start the sample world, materialize every family on it, print a summary.

Each family module may define ``demo_steps(resources, scale) -> list[DemoStep]``; the demo runs them in
``order`` against a persistent Dagster instance (``DAGSTER_HOME``), so ``dagster dev`` shows the result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from vila_assets.demo_plan import DemoStep

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    step: DemoStep
    success: bool
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    materializations: int = 0


@dataclass
class DemoSummary:
    data_root: Path
    steps: list[StepResult]
    assets: dict[str, dict] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return bool(self.steps) and all(s.success for s in self.steps)

    def render(self) -> str:
        lines = [f"vila_assets demo — data root {self.data_root}", ""]
        lines.append(f"{'step':<34} {'ok':<4} {'mat':>5} {'checks':>8}")
        for s in self.steps:
            checks = f"{s.checks_passed}/{s.checks_passed + len(s.checks_failed)}"
            lines.append(f"{s.step.name:<34} {'yes' if s.success else 'NO':<4} {s.materializations:>5} {checks:>8}")
            for failed in s.checks_failed:
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


def _metadata_value(v) -> object:
    return getattr(v, "value", v)


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
                if "yield" in name or name in ("records", "samples", "docs_out", "count"):
                    v = _metadata_value(value)
                    yields[name] = round(v, 3) if isinstance(v, float) else v
        out[key.to_user_string()] = {"partitions": n, "yields": yields}
    return out


def run_steps(
    defs: dg.Definitions, steps: list[DemoStep], instance: dg.DagsterInstance
) -> list[StepResult]:
    job = defs.resolve_implicit_global_asset_job_def()
    results = []
    for step in sorted(steps, key=lambda s: s.order):
        for pdef_name, keys in step.dynamic_partitions.items():
            instance.add_dynamic_partitions(pdef_name, list(keys))
        tags: dict[str, str] = {"vila_assets/demo": step.name}
        partition_key = None
        if step.partitions:
            if len(step.partitions) == 1:
                partition_key = step.partitions[0]
            else:
                tags["dagster/asset_partition_range_start"] = step.partitions[0]
                tags["dagster/asset_partition_range_end"] = step.partitions[-1]
        log.info("demo: %s", step.name)
        res = job.execute_in_process(
            asset_selection=[dg.AssetKey.from_user_string(a) for a in step.assets],
            partition_key=partition_key,
            tags=tags,
            run_config=step.run_config or None,
            instance=instance,
            raise_on_error=False,
        )
        sr = StepResult(step, res.success)
        for ev in res.all_events:
            if ev.event_type_value == "ASSET_MATERIALIZATION":
                sr.materializations += 1
            elif ev.event_type_value == "ASSET_CHECK_EVALUATION":
                data = ev.event_specific_data
                if data.passed:
                    sr.checks_passed += 1
                else:
                    severity = getattr(getattr(data, "severity", None), "value", "ERROR")
                    sr.checks_failed.append(
                        f"{data.asset_key.to_user_string()}:{data.check_name} ({severity.lower()})"
                    )
        if not res.success:
            for ev in res.all_events:
                if ev.is_failure and ev.message:
                    log.error("%s: %s", step.name, ev.message)
        results.append(sr)
    return results


def run_demo(
    data_root: str | Path = "./data",
    *,
    scale: str = "demo",
    seed: int = 0,
    instance: dg.DagsterInstance | None = None,
    families: list[str] | None = None,
) -> DemoSummary:
    """Start the sample world under ``<data_root>/sample_world`` and materialize every family on it."""
    from vila_assets import definitions
    from vila_assets.sample_world.world import SampleWorld, environment

    data_root = Path(data_root).resolve()
    with SampleWorld(data_root / "sample_world", seed=seed, scale=scale) as world:
        with environment({**world.env(), "VILA_DATA_ROOT": str(data_root)}):
            defs = definitions.build_definitions()
            resources = dict(defs.resources or {})
            steps: list[DemoStep] = []
            for mod in definitions.family_modules():
                name = mod.__name__.rsplit(".", 1)[-1]
                if families and name not in families:
                    continue
                if hasattr(mod, "demo_steps"):
                    steps += mod.demo_steps(resources, scale)
            instance = instance or dg.DagsterInstance.get()
            results = run_steps(defs, steps, instance)
            summary = DemoSummary(data_root, results, collect_asset_summary(instance, defs))
            report = data_root / "reports" / "demo_summary.json"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(summary.assets, indent=2, default=str))
            return summary
