"""The one ``Definitions`` of vila_assets: every dataset family, the resources of one deployment profile,
and the explicit automation sensor (Dagster's default one is STOPPED in open source, so the SFT mixture
would never rebuild on its own).

Settings, read here and nowhere else:

- ``VILA_PROFILE``: ``production`` (default) or ``sample_world`` (``vila_assets.profiles``);
- ``VILA_DATA_ROOT``: the data root, a local path (default ``./data``) or an fsspec URL;
- ``VILA_EXECUTOR``: ``multiprocess`` (default), ``in_process`` or ``k8s`` (``vila_assets.deployment``);
- ``VILA_GPU_IMAGE``: with ``k8s``, the (CUDA) image of GPU steps (default: the code location's image).

Families are discovered: every package under ``vila_assets.assets`` (not starting with ``_``) that
exposes ``defs`` (see ``docs/architecture.md``, "Adding a family").
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import dagster as dg

import vila_assets.assets as assets_pkg
from vila_assets.assets.platform.sensors import rerun_unhealthy_shards
from vila_assets.assets.platform.shard_health import sharded_asset_keys
from vila_assets.deployment import executor_for
from vila_assets.profiles import Profile, load_profile

PROFILE_SETTING = "VILA_PROFILE"
DATA_ROOT_SETTING = "VILA_DATA_ROOT"
EXECUTOR_SETTING = "VILA_EXECUTOR"
GPU_IMAGE_SETTING = "VILA_GPU_IMAGE"


def family_modules() -> list:
    """Every dataset family package under ``vila_assets.assets``, in name order."""
    return [
        importlib.import_module(f"{assets_pkg.__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(assets_pkg.__path__), key=lambda i: i.name)
        if not info.name.startswith("_")
    ]


def family_definitions() -> dg.Definitions:
    """Every family's assets, checks and sensors, without resources."""
    return dg.Definitions.merge(*(m.defs for m in family_modules()))


def _automated_assets(defs: dg.Definitions) -> list[dg.AssetKey]:
    keys = []
    for a in defs.assets or []:
        if isinstance(a, dg.AssetsDefinition):
            keys += [k for k, cond in a.automation_conditions_by_key.items() if cond is not None]
    return keys


def build_definitions(profile: Profile | None = None) -> dg.Definitions:
    """The code location for ``profile`` (default: the one the settings name)."""
    if profile is None:
        profile = load_profile(os.environ.get(PROFILE_SETTING), os.environ.get(DATA_ROOT_SETTING))
    families = family_definitions()
    sensors = []
    automated = _automated_assets(families)
    if automated:
        sensors.append(
            dg.AutomationConditionSensorDefinition(
                "vila_automation",
                target=dg.AssetSelection.assets(*automated),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
                description="Evaluates the automation conditions of fan-in assets (the SFT mixture).",
            )
        )
    rerun_sensor, rerun_jobs = rerun_unhealthy_shards(sharded_asset_keys(families.assets or []))
    sensors.append(rerun_sensor)
    executor = executor_for(os.environ.get(EXECUTOR_SETTING), families.assets or [], os.environ.get(GPU_IMAGE_SETTING))
    return dg.Definitions.merge(families, dg.Definitions(resources=profile.resources, sensors=sensors,
                                                         jobs=rerun_jobs, executor=executor))


defs = build_definitions()
