"""VFLAN's partitions: VILA's 128 output chunks (``part-00000`` .. ``part-00127``).

The set is fixed at VILA's 128: changing the count means a new ``StaticPartitionsDefinition`` (and a new
asset history), not a config value. ``single_run``: a backfill of all chunks is one run that scans the
sources once."""

import dagster as dg

from vila_assets.core.vflan import N_CHUNKS

CHUNK_KEYS = [f"{i:05d}" for i in range(N_CHUNKS)]
vflan_chunk_partitions = dg.StaticPartitionsDefinition(CHUNK_KEYS)
VFLAN_BACKFILL = dg.BackfillPolicy.single_run()
