"""What VILA's sharded loaders can use at a training world size, and a layout that loses nothing.

VILA's sharded loaders (types ``mmc4``, ``coyo``, ``vflan`` sharded) give rank ``r`` the contiguous block of
shards ``[r*k, (r+1)*k)`` with ``k = n_shards // world_size``; leftover shards are never read, and every
rank is cut to the shortest rank's length. COYO also packs ``samples_per_index`` (4) samples per index, so
a rank keeps ``sum // 4`` indices. With fewer shards than ranks there is no data at all.

- :func:`usable_records` says how many records a layout yields at a world size (the rest are lost).
- :func:`balanced_sizes` lays ``n`` records into shards so every record is usable: a shard count that is
  a multiple of the world size, equal rank totals that are multiples of ``samples_per_index``; where
  ``n`` does not divide, the shortfall is filled by repeating the first records (as PyTorch's
  ``DistributedSampler`` pads), and the number repeated is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from vila_assets.core.policy import Difference

POLICY_DIFFERENCES = (
    Difference(
        "MMC4, COYO, VFLAN", "shards at the training world size",
        "shard counts and sizes as they fall; the loader drops leftover shards, cuts every rank to the "
        "shortest, and COYO drops a rank's samples beyond a multiple of 4",
        "same layout; the `train_world_size` check reports usable vs total records",
        "COYO parts and VFLAN chunks are laid out so every record is usable at `train_world_size` (rank "
        "totals equal, padded by repeating the fewest records, the count reported); MMC4 keeps one pickle "
        "per source shard and the check reports what is usable"),
)


@dataclass(frozen=True)
class Usable:
    total: int
    usable: int
    world_size: int
    shards_read: int  # shards some rank reads
    shards: int

    @property
    def lost(self) -> int:
        return self.total - self.usable

    @property
    def share(self) -> float:
        return self.usable / self.total if self.total else 1.0


def usable_records(counts: list[int], world_size: int, samples_per_index: int = 1) -> Usable:
    """Records VILA's loader uses from shards with these ``counts`` (in shard-name order)."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    total = sum(counts)
    k = len(counts) // world_size
    if k == 0:
        return Usable(total, 0, world_size, 0, len(counts))
    per_rank = [sum(counts[r * k:(r + 1) * k]) // samples_per_index for r in range(world_size)]
    return Usable(total, min(per_rank) * samples_per_index * world_size, world_size, k * world_size, len(counts))


@dataclass(frozen=True)
class Layout:
    sizes: tuple[int, ...]  # records per shard, in shard order
    padded: int  # records repeated to fill the last ranks (taken from the start of the sequence)

    @property
    def total(self) -> int:
        return sum(self.sizes)


def balanced_sizes(n: int, shards: int, world_size: int, samples_per_index: int = 1) -> Layout:
    """Shard sizes for ``n`` records in ``shards`` shards (a multiple of ``world_size``) with every record
    usable at ``world_size``."""
    if world_size < 1 or samples_per_index < 1:
        raise ValueError("world size and samples per index must be >= 1")
    if shards < world_size or shards % world_size:
        raise ValueError(f"{shards} shards do not split evenly over world size {world_size}; use a multiple")
    if n == 0:
        return Layout((0,) * shards, 0)
    unit = world_size * samples_per_index
    total = -(-n // unit) * unit
    per_rank, k = total // world_size, shards // world_size
    sizes: list[int] = []
    for _ in range(world_size):
        base, extra = divmod(per_rank, k)
        sizes += [base + 1] * extra + [base] * (k - extra)
    return Layout(tuple(sizes), total - n)


def padding_indices(n: int, padded: int) -> list[int]:
    """Which records (by position) fill ``padded`` slots: the first ones, cycling if ``n`` is tiny."""
    return [i % n for i in range(padded)] if n else []
