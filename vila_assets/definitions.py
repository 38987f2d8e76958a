"""The one ``Definitions`` of vila_assets: every dataset family, the shared resources, and the explicit
automation sensor (Dagster's default one is STOPPED in open source, so the SFT mixture would never
rebuild on its own)."""

from __future__ import annotations

import importlib
import pkgutil

import dagster as dg

import vila_assets.assets as assets_pkg
from vila_assets.resources.config import default_resources


def family_modules() -> list:
    """Every dataset family module under ``vila_assets.assets``, in name order."""
    return [
        importlib.import_module(f"{assets_pkg.__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(assets_pkg.__path__), key=lambda i: i.name)
        if not info.name.startswith("_")
    ]


def _automated_assets(defs: dg.Definitions) -> list[dg.AssetKey]:
    keys = []
    for a in defs.assets or []:
        if isinstance(a, dg.AssetsDefinition):
            keys += [k for k, cond in a.automation_conditions_by_key.items() if cond is not None]
    return keys


def build_definitions() -> dg.Definitions:
    families = dg.Definitions.merge(*(m.defs for m in family_modules()))
    automated = _automated_assets(families)
    sensors = []
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
    return dg.Definitions.merge(families, dg.Definitions(resources=default_resources(), sensors=sensors))


defs = build_definitions()
