"""Platform-wide views: the per-shard health report and the sensor that re-runs unhealthy shards."""

import dagster as dg

from vila_assets.assets.platform.report import platform_report
from vila_assets.assets.platform.sensors import rerun_unhealthy_shards

defs = dg.Definitions(assets=[platform_report], sensors=[rerun_unhealthy_shards])
