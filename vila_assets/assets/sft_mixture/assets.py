"""The ``sft_mixture`` asset and its automation condition.

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

import json

import dagster as dg

from vila_assets.assets._checks import Findings
from vila_assets.assets._metadata import md_table, path_value
from vila_assets.assets.sft_mixture.checks import CHECKS, COMPONENTS_CURRENT, REGISTRY_PATHS_EXIST
from vila_assets.core.llava_json import sha256_file
from vila_assets.core.sft_mixture import COMPONENTS, MIXTURES, MixtureError, manifest, read_components, write_mixture
from vila_assets.core.vila_format import REGISTRY
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


def _fetch_components(data_root: DataRoot) -> None:
    """Bring every component into the working copy (a no-op on a local root)."""
    for name in COMPONENTS:
        entry = REGISTRY[name]
        path = data_root.path(entry.data_path.removeprefix("./"))
        if entry.type == "vflan":
            data_root.fetch_dir(path)
        else:
            data_root.fetch(path)


def _check_outputs(findings: Findings, data_root: DataRoot, manifest_path) -> None:
    written = json.loads(manifest_path.read_text())
    try:
        now = manifest(read_components(data_root.path()))["components"]
    except MixtureError as exc:
        findings.fail(COMPONENTS_CURRENT.name, "components", str(exc))
    else:
        for a, b in zip(written["components"], now):
            findings.expect(COMPONENTS_CURRENT.name, a["name"], a == b, "changed on disk since it was hashed")
    for c in written["components"]:
        for rel in (c["data_path"], c["media_dir"]):
            if rel:
                findings.expect(REGISTRY_PATHS_EXIST.name, rel, data_root.path(rel.removeprefix("./")).exists(),
                                "does not exist")


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
    check_specs=[c.spec("sft_mixture") for c in CHECKS],
    description="SFT mixture manifest + VILA-style registry (mix665k, VFLAN, ShareGPT4V); rebuilt on any component update.",
)
def sft_mixture(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.MaterializeResult:
    _fetch_components(data_root)
    try:
        components = read_components(data_root.path())
    except MixtureError as exc:
        raise dg.Failure(str(exc)) from None
    out = write_mixture(components, data_root.manifests(FAMILY))
    data_root.publish(out.manifest, out.datasets_yaml, out.mixtures_yaml)
    findings = Findings(CHECKS)
    _check_outputs(findings, data_root, out.manifest)
    by_name = {c.name: c for c in components}
    return dg.MaterializeResult(
        metadata={
            "components": md_table(("dataset", "type", "samples", "files", "sha256"),
                                   [(f"`{c.name}`", c.dataset_type, c.samples, c.files, f"`{c.sha256[:12]}`")
                                    for c in components]),
            **{f"samples_{c.name}": c.samples for c in components},
            **{f"mixture_{m}": sum(by_name[p].samples for p in parts) for m, parts in MIXTURES.items()},
            # the paper's stage-3 mixture (3_sft.sh), the number a person looks for first
            "samples": sum(by_name[p].samples for p in MIXTURES["vflan_sharegpt4v_sft"]),
            "manifest": path_value(data_root, out.manifest),
            "registry": path_value(data_root, out.datasets_yaml),
            "mixtures": path_value(data_root, out.mixtures_yaml),
            "manifest_sha256": sha256_file(out.manifest),
        },
        check_results=findings.results(),
    )
