"""Training world-size arithmetic against a direct simulation of VILA's sharded loader."""

from __future__ import annotations

import random

import pytest

from vila_assets.core.train_layout import balanced_sizes, padding_indices, usable_records


def simulate_loader(counts: list[int], world_size: int, samples_per_index: int = 1) -> int:
    """VILA's sharded loaders, spelled out: rank r reads shards [r*k, (r+1)*k), keeps whole indices of
    ``samples_per_index`` samples, and every rank is cut to the shortest rank's length."""
    k = len(counts) // world_size
    if k == 0:
        return 0
    lengths = []
    for rank in range(world_size):
        block = counts[rank * k:(rank + 1) * k]
        lengths.append(sum(block) // samples_per_index)
    return min(lengths) * samples_per_index * world_size


def test_usable_matches_loader_simulation_on_random_layouts():
    rng = random.Random(7)
    for _ in range(500):
        counts = [rng.randrange(0, 50) for _ in range(rng.randrange(0, 40))]
        w, spi = rng.randrange(1, 12), rng.choice((1, 4))
        got = usable_records(counts, w, spi)
        assert got.usable == simulate_loader(counts, w, spi)
        assert got.total == sum(counts) and got.lost == got.total - got.usable


def test_fewer_shards_than_ranks_gives_nothing():
    u = usable_records([10, 10, 10], world_size=4)
    assert (u.usable, u.lost, u.shards_read) == (0, 30, 0)


@pytest.mark.parametrize("n,shards,w,spi", [(1, 4, 4, 1), (389, 128, 8, 1), (12441, 16, 8, 4), (5, 8, 2, 4),
                                            (1000, 128, 128, 1), (999, 6, 3, 1)])
def test_balanced_layout_uses_every_record(n, shards, w, spi):
    layout = balanced_sizes(n, shards, w, spi)
    assert len(layout.sizes) == shards
    assert layout.total == n + layout.padded
    assert 0 <= layout.padded < w * spi
    assert simulate_loader(list(layout.sizes), w, spi) == layout.total  # nothing dropped, padding included
    assert len(padding_indices(n, layout.padded)) == layout.padded


def test_balanced_layout_refuses_shard_counts_that_do_not_split():
    with pytest.raises(ValueError, match="multiple"):
        balanced_sizes(100, 10, 4)
