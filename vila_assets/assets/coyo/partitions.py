"""COYO's partitions: the 128 parquet shards of ``kakaobrain/coyo-700m`` (static: the dataset is frozen)."""

import dagster as dg

from vila_assets.assets._sharded import ranged
from vila_assets.core.coyo import SHARD_KEYS

coyo_shards = dg.StaticPartitionsDefinition(list(SHARD_KEYS))
# a shard is ~5.4M rows of metadata and ~1M selected URLs: 16 per run keeps a run a few hours long
COYO_BACKFILL = ranged(16)
