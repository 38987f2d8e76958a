"""One module per dataset family. Each module exposes ``defs``: a ``dagster.Definitions`` of its assets,
checks, partitions and sensors; ``vila_assets.definitions`` merges them."""

import warnings

import dagster as dg

# Every sharded asset sets a BackfillPolicy (ranged runs over shards); Dagster 1.13 still flags the
# parameter as beta on each one. Said once here instead of once per asset at every load.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
