"""MMC4's partitions: one per source shard, keyed by the zero-padded shard index (``"00042"``).

Dynamic, because the listing of the source decides which shards exist (the real core set has 23,085 of
indices 0..23098); ``mmc4_shard_sensor`` registers new keys."""

import dagster as dg

from vila_assets.assets._sharded import ranged

mmc4_shards = dg.DynamicPartitionsDefinition(name="mmc4_shards")
# 23,085 shards -> 47 runs. Each run costs ~13 CPU-s of orchestration whatever its range (bench/README.md,
# "Backfills at MMC4 scale"), so the range is large; a bad shard is found per shard (partition metadata,
# check descriptions) and re-run alone by the platform's re-run sensor, not by re-running its range.
MMC4_BACKFILL = ranged(500)
