"""The sample world's sizes and names that a deployment profile needs (``vila_assets.profiles``):
what differs from production because the miniature sources are small."""

from __future__ import annotations

from vila_assets.core.coyo import SHARD_KEYS

__all__ = ["COYO_SAMPLES_PER_PART", "TRAIN_WORLD_SIZE", "coyo_demo_shards", "flan_sample_size"]

# ~150 COYO samples survive in the sample world; parts of 32 show both layouts (vila: exactly 32, the rest
# dropped; curated: at most 32, laid out for TRAIN_WORLD_SIZE).
COYO_SAMPLES_PER_PART = 32

# the training world size the sample world's sharded outputs are laid out for
TRAIN_WORLD_SIZE = 4


def flan_sample_size(scale: str) -> int:
    """Smaller than the miniature FLAN repo, so sampling really selects."""
    return 150 if scale == "test" else 3000


def coyo_demo_shards(scale: str) -> tuple[str, ...]:
    """The first shards are the big ones of the sample world (the rest hold a handful of rows)."""
    return tuple(SHARD_KEYS[:4] if scale == "test" else SHARD_KEYS[:8])
