"""One package per dataset family (``<family>/``: assets, checks, config, sources, layout, partitions).
Each exposes ``defs``: a ``dagster.Definitions`` of its assets (checks declared on them) and sensors;
``vila_assets.definitions`` discovers and merges them. Shared by every family: ``_checks`` (the check
convention), ``_sharded`` (ranged runs over shards), ``_metadata`` (tables and charts)."""

import warnings

import dagster as dg

# Every sharded asset sets a BackfillPolicy (ranged runs over shards); Dagster 1.13 still flags the
# parameter as beta on each one. Said once here instead of once per asset at every load.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
