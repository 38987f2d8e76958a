"""Ranged runs over sharded assets: the one helper MMC4, COYO and VFLAN share.

A sharded asset carries a ``BackfillPolicy``, so one run covers one shard or a range of them (a
23,085-shard MMC4 backfill is ~462 runs of 50, not 23,085 runs). Its body::

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

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import dagster as dg

from vila_assets.assets._checks import Check, Findings

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
        progress = Progress(len(self.keys), self.context.log.info, what=what)
        for key in self.keys:
            yield key
            progress.step()
        progress.done()

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


class Progress:
    """Progress lines for a long step: ``what: 12/50 shards (24%), 0.8/s, ETA 48s``, at most every
    ``every`` seconds and once at the end."""

    def __init__(self, total: int, emit, *, what: str = "", unit: str = "shards", every: float = PROGRESS_SECONDS,
                 clock=time.monotonic):
        self.total, self.emit, self.what, self.unit, self.every, self.clock = total, emit, what, unit, every, clock
        self.n = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.n / elapsed
        pct = 100 * self.n / self.total if self.total else 100.0
        eta = (self.total - self.n) / rate if rate else float("inf")
        eta_s = f"{eta:.0f}s" if eta != float("inf") else "?"
        return f"{self.what}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), {rate:.2g}/s, ETA {eta_s}"

    def step(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.every and self.n < self.total:
            self.last = self.clock()
            self.emit(self.line())

    def done(self) -> None:
        if self.total > 1:
            self.emit(self.line())
