"""Run config of the COYO assets, each with its production default; check thresholds in ``checks``.

Where the shards come from (repo, revision) is the ``coyo_source`` resource, and the fresh-score
threshold is the ``clip`` resource's ``min_fresh_score`` (a property of the model's score scale).
"""

import dagster as dg

from vila_assets.core.coyo import VILA_FRACTION, VILA_MIN_SCORE
from vila_assets.core.coyo_split import VILA_SAMPLES_PER_PART


class CoyoSelectionConfig(dg.Config):
    fraction: float = VILA_FRACTION  # VILA: int(0.2 * n) rows per shard
    min_score: float = VILA_MIN_SCORE  # VILA: vitb32 + vitl14 > 0.6
    oversample: float = 1.0  # > 1 (curated only): preselect more; the re-score keeps the best int(fraction * n)
    bucket_rows: int = 50_000  # full rows held at once while writing the selection in rank order


class CoyoImagesChecks(dg.Config):
    min_download_yield: float = 0.5  # downloaded / selected; COYO's 2021 URLs lose a good share to link rot


class CoyoImagesConfig(dg.Config):
    checks: CoyoImagesChecks = CoyoImagesChecks()


class CoyoClipChecks(dg.Config):
    max_exact_duplicate_rate: float = 0.01  # kept pairs whose JPEG repeats an earlier one, per shard
    max_near_duplicate_rate: float = 0.05  # kept pairs within 4 bits of an earlier one's pHash, per shard
    max_unscorable_rate: float = 0.05  # downloaded pairs the scorer could not decode, per shard


class CoyoClipConfig(dg.Config):
    batch_rows: int = 256  # pairs read and scored per step (the scorer batches and overlaps inside)
    checks: CoyoClipChecks = CoyoClipChecks()


class CoyoSplitChecks(dg.Config):
    decode_per_part: int = 32  # images per part the contract check decodes (all are checked for presence)


class CoyoSplitConfig(dg.Config):
    samples_per_part: int = VILA_SAMPLES_PER_PART  # vila: every part exactly this; curated: at most this
    checks: CoyoSplitChecks = CoyoSplitChecks()
