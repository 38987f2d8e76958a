"""MMC4-core (VILA pre-training, interleaved image-text; registry entry ``mmc4core``).

    source shard -> mmc4_annotations -> mmc4_images -> mmc4_core_shard
                    (validated docs)    (crawled)      playground/data/mmc4-core/pkl-core/<stem>.pkl + .count

VILA used mmc4-core, withdrawn by AI2 in Feb 2025; the ``mmc4_source`` resource (``sources.py``) defaults to
the public fewer-faces copy ``hf:jmhessel/mmc4-core-ff``. One ``mmc4_shards`` partition per source shard,
keyed by the zero-padded index (``"00042"``), registered by ``mmc4_shard_sensor`` from the source's
listing; backfills run ranges of 500 shards (``partitions.py``). The ``data_policy`` resource picks the
merge rules of ``mmc4_core_shard`` (``vila``: VILA's scripts; ``curated``: partial docs and dedup; the
differences are ``POLICY_DIFFERENCES`` in ``core/mmc4_merge.py``); one crawl serves both. Where each file
lives: ``layout.py``; checks and their thresholds: ``checks.py`` and ``config.py``.
"""

import dagster as dg

from vila_assets.assets.mmc4.assets import mmc4_annotations, mmc4_core_shard, mmc4_images
from vila_assets.assets.mmc4.partitions import MMC4_BACKFILL, mmc4_shards
from vila_assets.assets.mmc4.sensors import mmc4_shard_sensor
from vila_assets.assets.mmc4.sources import Mmc4Source

__all__ = ["MMC4_BACKFILL", "Mmc4Source", "defs", "mmc4_annotations", "mmc4_core_shard", "mmc4_images",
           "mmc4_shard_sensor", "mmc4_shards"]

defs = dg.Definitions(assets=[mmc4_annotations, mmc4_images, mmc4_core_shard], sensors=[mmc4_shard_sensor])
