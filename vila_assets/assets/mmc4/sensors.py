"""Partition discovery: the source's listing decides which MMC4 shards exist."""


from collections.abc import Iterable

import dagster as dg

from vila_assets.assets.mmc4.partitions import mmc4_shards
from vila_assets.assets.mmc4.sources import Mmc4Source
from vila_assets.core.mmc4 import Listing
from vila_assets.resources.hub import HubClient


def new_shard_keys(listing: Listing, registered: Iterable[str]) -> list[str]:
    """Keys of the listing not registered yet, in shard order (what the sensor adds)."""
    have = set(registered)
    return [k for k in listing.shards if k not in have]


def vanished_shard_keys(listing: Listing, registered: Iterable[str]) -> list[str]:
    """Registered keys the listing no longer has. Never removed automatically (their materializations
    and outputs stay); reported so that a person decides."""
    return sorted(set(registered) - set(listing.shards))


@dg.sensor(
    name="mmc4_shard_sensor",
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists the `mmc4_source` and registers every new shard as an `mmc4_shards` partition.",
)
def mmc4_shard_sensor(context: dg.SensorEvaluationContext, hub: HubClient, mmc4_source: Mmc4Source):
    listing = mmc4_source.listing(hub)
    # one read of the registered keys, however many shards the source lists (23,085 for the real set)
    registered = context.instance.get_dynamic_partitions(mmc4_shards.name)
    new = new_shard_keys(listing, registered)
    vanished = vanished_shard_keys(listing, registered)
    gone = ""
    if vanished:
        gone = (f"; {len(vanished)} registered shard(s) no longer in the source, kept (remove them by hand if "
                f"intended): {', '.join(vanished[:20])}")
        context.log.warning(gone[2:])
    if not new:
        return dg.SkipReason(f"{len(listing.shards)} shards in {listing.source}, none new{gone}")
    context.log.info(f"registering {len(new)} new mmc4 shard(s); source gaps: {listing.missing[:20]}")
    return dg.SensorResult(dynamic_partitions_requests=[mmc4_shards.build_add_request(new)])
