"""COYO-700M top-20 % (VILA pre-training, registry entry ``coyo``): 128 shard partitions ->
metadata -> selection -> images -> CLIP re-score -> VILA's ``pkl02-split`` parts.

- ``coyo_metadata_shard``: one parquet shard of the ``coyo_source`` repo at a pinned commit, schema-checked;
- ``coyo_selection``: VILA's rule (vitb32 + vitl14 > 0.6, top int(0.2 n)), ties broken by id;
- ``coyo_images``: the selected URLs crawled, one crawl per ranged run;
- ``coyo_clip_scored``: fresh CLIP scores of what was downloaded, below-threshold pairs dropped, VILA's
  per-shard pickle written (``gpu`` pool);
- ``coyo_split``: every materialized shard cut into equal-size ``part-%05d.pkl`` + ``.count``.

Files: ``layout.py``; checks: ``checks.py``; run config and check thresholds: ``config.py``; sources:
``sources.py`` (the ``coyo_source`` resource); partitions and backfill policy: ``partitions.py``.
"""

import dagster as dg

from vila_assets.assets.coyo.assets import ASSETS

defs = dg.Definitions(assets=ASSETS)
