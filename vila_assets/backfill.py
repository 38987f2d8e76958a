"""Chunked partition backfills over Dagster's GraphQL API: ``vila-assets backfill ASSET --chunk N``.

A backfill is launched the way the UI launches one (the ``launchPartitionBackfill`` mutation of a running
webserver, partition ranges per asset), but as consecutive backfills of at most ``N`` partitions each, as
dagster-open-platform does for its big backfills. Why chunks:

- each chunk is its own backfill on the UI's backfill page: which ranges are done shows at a glance, a
  failed range is re-run ("from failure") or cancelled without touching the others;
- each backfill row stays small: the daemon re-reads and re-writes a backfill (with all its partitions)
  while it submits its runs. With MMC4's ranged runs this is not a bottleneck (one backfill of all 23,085
  shards is measured in ``bench/README.md``), but it keeps a backfill of many small runs cheap;
- launching is one mutation per chunk, so the command returns in seconds; ``--wait`` then follows the
  backfills until every targeted partition has materialized or failed.

Progress goes out as lines a person can follow: done/total, rate and ETA, at most every few seconds.
The GraphQL layer is plain ``httpx`` (no extra client package): the queries are few and fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import httpx

from vila_assets.core.progress import ProgressLine, duration_text

DEFAULT_URL = "http://127.0.0.1:3000"
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

PARTITION_KEYS = """
query PartitionKeys($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode { isPartitioned partitionKeysByDimension { name partitionKeys } }
    ... on AssetNotFoundError { message }
  }
}"""

LAUNCH = """
mutation LaunchChunk($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on InvalidSubsetError { message }
    ... on PythonError { message stack }
  }
}"""

BACKFILL_STATUS = """
query BackfillStatus($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status
      assetBackfillData { assetBackfillStatuses {
        ... on AssetPartitionsStatusCounts {
          numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed
        }
      } }
    }
    ... on Error { message }
  }
}"""


class BackfillError(RuntimeError):
    """The webserver refused a request; the message says which request and why."""


class GraphQL:
    """A Dagster webserver's ``/graphql`` endpoint."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def __call__(self, query: str, **variables) -> dict:
        try:
            response = self.client.post(f"{self.url}/graphql", json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            raise BackfillError(f"{self.url}/graphql: {exc!r} (is `dagster dev` serving there?)") from exc
        if response.status_code != 200:
            raise BackfillError(f"{self.url}/graphql: HTTP {response.status_code}: {response.text[:500]}")
        body = response.json()
        if body.get("errors"):
            raise BackfillError(f"{self.url}/graphql: {body['errors'][0].get('message')}")
        return body["data"]

    def close(self) -> None:
        self.client.close()


def asset_path(asset: str) -> list[str]:
    """``a/b`` (Dagster's user string) -> ``["a", "b"]``."""
    return asset.split("/")


def partition_keys(gql: GraphQL, asset: str) -> list[str]:
    """Every partition key of ``asset``, in its partitions definition's order."""
    node = gql(PARTITION_KEYS, assetKey={"path": asset_path(asset)})["assetNodeOrError"]
    if node["__typename"] != "AssetNode":
        raise BackfillError(f"asset {asset}: {node.get('message', node['__typename'])}")
    dims = node["partitionKeysByDimension"]
    if not node["isPartitioned"] or len(dims) != 1:
        raise BackfillError(f"asset {asset}: a chunked backfill needs one partition dimension, it has {len(dims)}")
    return dims[0]["partitionKeys"]


def select(keys: Sequence[str], partitions: str | None) -> list[str]:
    """The keys of ``"A..B"`` (inclusive, in partition order); ``None`` selects all of them."""
    if not partitions:
        return list(keys)
    first, sep, last = partitions.partition("..")
    if not sep or not first or not last:
        raise BackfillError(f"--partitions {partitions!r}: expected FIRST..LAST, e.g. 00000..00999")
    index = {k: i for i, k in enumerate(keys)}
    for k in (first, last):
        if k not in index:
            raise BackfillError(f"--partitions {partitions!r}: no partition {k!r} ({len(keys)} partitions defined)")
    if index[first] > index[last]:
        raise BackfillError(f"--partitions {partitions!r}: {first} comes after {last} in partition order")
    return list(keys[index[first] : index[last] + 1])


@dataclass(frozen=True)
class Chunk:
    first: str
    last: str
    size: int


def chunked(keys: Sequence[str], size: int) -> list[Chunk]:
    """Consecutive ranges of at most ``size`` keys covering ``keys`` in order."""
    if size < 1:
        raise BackfillError(f"--chunk must be at least 1, got {size}")
    return [Chunk(keys[i], keys[min(i + size, len(keys)) - 1], min(size, len(keys) - i))
            for i in range(0, len(keys), size)]


def launch_chunk(gql: GraphQL, assets: Sequence[str], chunk: Chunk, title: str,
                 tags: dict[str, str] | None = None) -> str:
    """One backfill of ``assets`` over ``chunk`` (a partition range); its id."""
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": asset_path(a)}, "partitions": {"range": {"start": chunk.first, "end": chunk.last}}}
            for a in assets
        ],
        "title": title,
        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
    }
    result = gql(LAUNCH, params=params)["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"backfill {chunk.first}..{chunk.last} of {', '.join(assets)} refused: "
                            f"{result['__typename']}: {result.get('message', '')}")
    return result["backfillId"]


@dataclass(frozen=True)
class Counts:
    """Asset partitions of one or more backfills (each asset counted separately)."""

    targeted: int = 0
    materialized: int = 0
    failed: int = 0
    in_progress: int = 0
    finished: bool = True

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.targeted + other.targeted, self.materialized + other.materialized,
                      self.failed + other.failed, self.in_progress + other.in_progress,
                      self.finished and other.finished)

    @property
    def done(self) -> int:
        return self.materialized + self.failed


def backfill_counts(gql: GraphQL, backfill_id: str) -> Counts:
    node = gql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
    if node["__typename"] != "PartitionBackfill":
        raise BackfillError(f"backfill {backfill_id}: {node.get('message', node['__typename'])}")
    total = Counts()
    for s in (node.get("assetBackfillData") or {}).get("assetBackfillStatuses", []):
        if "numPartitionsTargeted" in s:
            total += Counts(s["numPartitionsTargeted"], s["numPartitionsMaterialized"], s["numPartitionsFailed"],
                            s["numPartitionsInProgress"])
    return Counts(total.targeted, total.materialized, total.failed, total.in_progress, node["status"] in FINISHED)


def follow(gql: GraphQL, backfill_ids: Sequence[str], poll: float = 10.0,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Counts]:
    """The summed counts of ``backfill_ids`` every ``poll`` seconds, until every backfill has finished.
    A finished backfill is not asked again."""
    done: dict[str, Counts] = {}
    while True:
        counts = Counts()
        for bid in backfill_ids:
            c = done.get(bid) or backfill_counts(gql, bid)
            if c.finished:
                done[bid] = c
            counts += c
        yield counts
        if counts.finished:
            return
        sleep(poll)


def launch(gql: GraphQL, assets: Sequence[str], chunk: int, partitions: str | None = None,
           title: str | None = None, out: Callable[[str], None] = print) -> list[str]:
    """Launch ``assets`` over ``partitions`` (default: all) as backfills of ``chunk`` partitions; their ids."""
    keys = select(partition_keys(gql, assets[0]), partitions)
    if not keys:
        raise BackfillError(f"asset {assets[0]} has no partitions yet")
    chunks = chunked(keys, chunk)
    label = title or f"{', '.join(assets)} {keys[0]}..{keys[-1]}"
    out(f"backfill: {len(keys):,} partitions of {', '.join(assets)} in {len(chunks)} backfill(s) of <= {chunk:,}")
    launched = ProgressLine("backfill: launched", len(keys), "partitions", every=5.0, out=out)
    ids: list[str] = []
    done = 0
    for i, c in enumerate(chunks, 1):
        ids.append(launch_chunk(gql, assets, c, f"{label} [{i}/{len(chunks)}] {c.first}..{c.last}"))
        done += c.size
        launched.update(done, f"{i}/{len(chunks)} backfills, last {ids[-1]}")
    return ids


def run_backfill(url: str, assets: Sequence[str], chunk: int, partitions: str | None = None, wait: bool = False,
                 title: str | None = None, poll: float = 10.0, out: Callable[[str], None] = print) -> int:
    """``vila-assets backfill``: launch, and with ``wait`` follow the backfills to the end. 0 when everything
    launched (and, waiting, nothing failed)."""
    gql = GraphQL(url)
    try:
        ids = launch(gql, assets, chunk, partitions, title, out)
        return _wait(gql, ids, poll, out) if wait else 0
    finally:
        gql.close()


def _wait(gql: GraphQL, ids: Sequence[str], poll: float, out: Callable[[str], None]) -> int:
    progress = ProgressLine("backfill: done", 0, "asset partitions", every=poll, out=out)
    for counts in follow(gql, ids, poll):
        progress.total = counts.targeted
        if not counts.finished:
            progress.update(counts.done, f"{counts.failed:,} failed, {counts.in_progress:,} in progress")
    out(f"backfill: finished {len(ids)} backfill(s): {counts.materialized:,} materialized, {counts.failed:,} failed "
        f"of {counts.targeted:,} asset partitions in {duration_text(progress.clock() - progress.started)}")
    return 1 if counts.failed else 0
