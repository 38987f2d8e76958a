"""The SFT mixture (stage 3): a manifest + VILA-style registry over mix665k, VFLAN and ShareGPT4V, rebuilt
automatically whenever a component materializes.

Automation. ``definitions.py`` declares the RUNNING ``AutomationConditionSensorDefinition`` for every asset
with a condition; this one is ``eager()`` with one addition:

    (newly_missing | any_deps_updated).since_last_handled()
      & ~any_deps_missing & ~any_deps_in_progress & ~(any dep has a backfill in progress) & ~in_progress

- ``any_deps_updated().since_last_handled()`` is a latch: a component update is remembered until the
  mixture is requested, so nothing is lost while the mixture waits.
- It waits while any of the 128 ``vflan_chunks`` partitions is missing (``any_deps_missing``). That is
  deliberate: a registry pointing VILA at a VFLAN directory with chunks missing would silently train on part
  of it (the loader just sees fewer shards). The wait is not forever: the latch fires the rebuild on the
  evaluation after the last chunk lands; a chunk that keeps failing shows as a failed partition of
  ``vflan_chunks``, which is where it has to be fixed.
- It also waits while a backfill of a component is in progress: a 128-chunk VFLAN rebuild runs as several
  ranged runs, and rebuilding the mixture between them would hash a half-old, half-new VFLAN.
"""

import dagster as dg

from vila_assets.core.sft_mixture import MIXTURES, MixtureError, read_components, write_mixture
from vila_assets.demo_plan import DemoStep
from vila_assets.resources.storage import DataRoot

FAMILY = "sft"
VFLAN_ASSET = "vflan_chunks"

SFT_MIXTURE_CONDITION = (
    dg.AutomationCondition.in_latest_time_window()
    & (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.any_deps_match(dg.AutomationCondition.backfill_in_progress())
    & ~dg.AutomationCondition.in_progress()
).with_label("eager, not mid-backfill")


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "yaml"},
    deps=[
        dg.AssetDep("llava_mix665k"),
        dg.AssetDep("sharegpt4v_filtered"),
        # fan-in: the mixture covers every VFLAN chunk
        dg.AssetDep(VFLAN_ASSET, partition_mapping=dg.AllPartitionMapping()),
    ],
    automation_condition=SFT_MIXTURE_CONDITION,
    description="SFT mixture manifest + VILA-style registry (mix665k, VFLAN, ShareGPT4V); rebuilt on any component update.",
)
def sft_mixture(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.MaterializeResult:
    try:
        components = read_components(data_root.path())
    except MixtureError as exc:
        raise dg.Failure(str(exc)) from None
    out = write_mixture(components, data_root.manifests("sft"))
    by_name = {c.name: c for c in components}
    rows = "\n".join(
        f"| `{c.name}` | {c.dataset_type} | {c.samples} | {c.files} | `{c.sha256[:12]}` |" for c in components
    )
    table = "| dataset | type | samples | files | sha256 |\n|---|---|---:|---:|---|\n" + rows
    return dg.MaterializeResult(
        metadata={
            "components": dg.MetadataValue.md(table),
            **{f"samples_{c.name}": c.samples for c in components},
            **{f"mixture_{m}": sum(by_name[p].samples for p in parts) for m, parts in MIXTURES.items()},
            # the paper's stage-3 mixture (3_sft.sh), the number a person looks for first
            "samples": sum(by_name[p].samples for p in MIXTURES["vflan_sharegpt4v_sft"]),
            "manifest": dg.MetadataValue.path(str(out.manifest)),
            "registry": dg.MetadataValue.path(str(out.datasets_yaml)),
            "mixtures": dg.MetadataValue.path(str(out.mixtures_yaml)),
            "manifest_sha256": _sha(out.manifest.read_bytes()),
        }
    )


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec("components_current", asset="sft_mixture",
                          description="the manifest's counts and hashes match the components on disk now"),
        dg.AssetCheckSpec("registry_paths_exist", asset="sft_mixture",
                          description="every registry data_path / media_dir exists under the data root"),
    ]
)
def sft_mixture_checks(data_root: DataRoot):
    import json

    from vila_assets.core.sft_mixture import manifest

    path = data_root.manifests("sft", "sft_mixture.json")
    written = json.loads(path.read_text())
    try:
        now = manifest(read_components(data_root.path()))
        stale = [a["name"] for a, b in zip(written["components"], now["components"]) if a != b]
    except MixtureError as exc:
        stale = [str(exc)]
    yield dg.AssetCheckResult(check_name="components_current", asset_key="sft_mixture", passed=not stale,
                              metadata={"stale": ", ".join(stale)})
    missing = []
    for c in written["components"]:
        for rel in (c["data_path"], c["media_dir"]):
            if rel and not data_root.path(rel.removeprefix("./")).exists():
                missing.append(rel)
    yield dg.AssetCheckResult(check_name="registry_paths_exist", asset_key="sft_mixture", passed=not missing,
                              metadata={"missing": ", ".join(missing)})


defs = dg.Definitions(assets=[sft_mixture], asset_checks=[sft_mixture_checks])


def demo_steps(resources: dict, scale: str) -> list[DemoStep]:
    # After llava (5, 10), sharegpt4v (12) and VFLAN (20). In a deployment the automation sensor does this.
    return [DemoStep("sft: mixture manifest + registry", ("sft_mixture",), order=30)]
