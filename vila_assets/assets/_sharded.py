"""Ranged runs over sharded assets: the one helper MMC4, COYO and VFLAN share.

A sharded asset carries a ``BackfillPolicy``, so one run covers one shard or a range of them (a
23,085-shard MMC4 backfill is 47 runs of up to 500, not 23,085 runs). Its body::

    run = ShardedRun(context, CHECKS)
    for key in run:
        ...work on shard key...
        run.findings.bound("image_yield", key, y, config.checks.min_image_yield, what="image yield")
        run.record(key, {"image_yield": y, ...}, images=n)
    return run.result()

``record`` keeps the shard's metadata and sums the keyword totals; ``result`` writes each shard's metadata
on its own partition with its health (``health``: ``ok`` or ``failed``, and ``failed_checks``: check ->
reason), so the UI's partition view and the ``rerun_unhealthy_shards`` sensor see which shard of a range
failed, and returns the run-level materialization (``shards_in_run`` and each total as ``<name>_in_run``)
with one check result per declared check, naming the failing shards (see ``_checks``). Iterating logs a
progress line (done/total, rate, ETA) at most every ``PROGRESS_SECONDS``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg

from vila_assets.assets._checks import Check, Findings
from vila_assets.core.progress import ProgressLine

PROGRESS_SECONDS = 30.0  # a person watching the run's log sees a line at least this often
HEALTH_OK, HEALTH_FAILED = "ok", "failed"


def ranged(max_partitions_per_run: int) -> dg.BackfillPolicy:
    """The backfill policy of a sharded asset: ranges of at most ``max_partitions_per_run`` shards."""
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=max_partitions_per_run)


class ShardedRun:
    """One run of a sharded asset: its partition keys, per-shard metadata, totals and check findings."""

    def __init__(self, context: dg.AssetExecutionContext, checks: Sequence[Check] = ()):
        self.context = context
        self.keys: list[str] = list(context.partition_keys)
        self.findings = Findings(checks)
        self.totals: Counter = Counter()
        self._shard_metadata: dict[str, dict] = {}

    def __iter__(self) -> Iterator[str]:
        what = ", ".join(k.to_user_string() for k in self.context.selected_asset_keys)
        progress = ProgressLine(what, len(self.keys), "shards", every=PROGRESS_SECONDS, out=self.context.log.info)
        for key in self.keys:
            yield key
            progress.step()
        if len(self.keys) > 1:
            progress.finish()

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def log(self):
        return self.context.log

    @property
    def label(self) -> str:
        """``first-last-n``: names scratch space that belongs to this range (a retried run reuses it)."""
        return f"{self.keys[0]}-{self.keys[-1]}-{len(self.keys)}"

    def record(self, key: str, metadata: Mapping[str, object], **totals: int | float) -> None:
        """Shard ``key``'s metadata, written on its own partition by :meth:`result`; ``totals`` are summed
        over the run."""
        self._shard_metadata.setdefault(key, {}).update(metadata)
        self.totals.update(totals)

    def shard_health(self, key: str) -> dict[str, object]:
        failures = self.findings.failures_of(key)
        return {"health": HEALTH_FAILED if failures else HEALTH_OK,
                "failed_checks": dg.MetadataValue.json(failures)}

    def ratio(self, num: str, den: str) -> float:
        """A run-level ratio of two totals (0 when the denominator is 0)."""
        d = self.totals[den]
        return round(self.totals[num] / d, 4) if d else 0.0

    def result(self, metadata: Mapping[str, object] | None = None) -> dg.MaterializeResult:
        for key in self.keys:
            self.context.add_asset_metadata({**self._shard_metadata.get(key, {}), **self.shard_health(key)},
                                            partition_key=key)
        unhealthy = [k for k in self.keys if self.findings.failures_of(k)]
        md: dict[str, object] = {"shards_in_run": len(self.keys), "unhealthy_shards_in_run": len(unhealthy)}
        md.update({f"{k}_in_run": v for k, v in sorted(self.totals.items())})
        md.update(metadata or {})
        return dg.MaterializeResult(metadata=md, check_results=self.findings.results())


