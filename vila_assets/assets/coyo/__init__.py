"""COYO-700M top-20 % (VILA pre-training, registry entry ``coyo``): 128 shard partitions ->
metadata -> selection -> images -> per-shard pickle -> VILA's ``pkl02-split`` parts. The ``data_policy``
resource decides where the data differs from VILA's scripts (``core.coyo.POLICY_DIFFERENCES``).

- ``coyo_metadata_shard``: one parquet shard of the ``coyo_source`` (hub repo at a pinned commit, local
  directory or fsspec URL), picked as VILA picks it and schema-checked;
- ``coyo_selection``: VILA's rule (vitb32 + vitl14 > 0.6, top int(0.2 n)); vila: VILA's float32 arithmetic,
  ties in file order, repeated ids kept; curated: ties by id, one row per id;
- ``coyo_images``: the selected URLs crawled, one crawl per ranged run;
- ``coyo_clip_scored``: VILA's per-shard pickle; curated re-scores with CLIP and drops below-threshold pairs
  (``gpu`` pool), vila keeps every downloaded pair;
- ``coyo_split``: ``part-%05d.pkl`` + ``.count``; vila: 12,440 per part, the remainder dropped and reported;
  curated: laid out so every record is usable at ``train_world_size``.

Files: ``layout.py``; checks: ``checks.py``; run config and check thresholds: ``config.py``; sources:
``sources.py`` (the ``coyo_source`` resource); partitions and backfill policy: ``partitions.py``.
"""

import dagster as dg

from vila_assets.assets.coyo.assets import ASSETS

defs = dg.Definitions(assets=ASSETS)
