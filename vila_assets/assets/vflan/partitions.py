"""VFLAN's partitions: VILA's 128 output parts (``part-00000`` .. ``part-00127``).

The set is fixed at VILA's 128: changing the count means a new ``StaticPartitionsDefinition`` (and a new
asset history), not a config value. Under the ``vila`` policy, fewer than 16,384 records make VILA's split
write more than 128 parts; partition ``00127`` owns every part past it (``core.vflan.chunks_for_partitions``).
``single_run``: a backfill of all parts is one run that scans the sources once."""

import dagster as dg

from vila_assets.core.vflan import N_CHUNKS

CHUNK_KEYS = [f"{i:05d}" for i in range(N_CHUNKS)]
vflan_chunk_partitions = dg.StaticPartitionsDefinition(CHUNK_KEYS)
VFLAN_BACKFILL = dg.BackfillPolicy.single_run()
