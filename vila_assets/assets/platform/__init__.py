"""Platform-wide views: the per-shard health report, and (built by ``definitions.py`` once every family's
sharded assets are known) the sensor that re-runs unhealthy shards."""

import dagster as dg

from vila_assets.assets.platform.report import platform_report

defs = dg.Definitions(assets=[platform_report])
