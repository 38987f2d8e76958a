"""The one asset-check convention of vila_assets, used by every family.

1. A check is a :class:`Check` declared in the family's ``checks.py`` and attached to its asset with
   ``check_specs=[CHECK.spec(asset_key), ...]``.
2. It is evaluated in the asset's body, at the end of the run, from the values that run computed: the
   body records findings on a :class:`Findings` (per shard through ``ShardedRun``, per file for
   unpartitioned assets) and returns ``findings.results()``: exactly one result per check per run.
3. Thresholds are fields of the asset's run config, grouped in a ``checks`` section (a ``dg.Config``
   of the family's ``config.py``), with production defaults. They are never read back out of an
   earlier materialization's metadata.

Why in the body and not separate ``@asset_check`` ops: Dagster 1.13 records one check result per run,
and a separate check op in a ranged run sees neither the run's partition range nor the values the body
computed, so it would have to re-derive the range from run tags and re-read every shard's outputs (for a
500-shard MMC4 range, gigabytes of pickles). In the body, a blocking check gates exactly the data that
run produced, and the failing shards are named in the result. The price: a check can't be run on its
own without rematerializing, so checks that re-read outputs (the VILA loader contract) read them back
from disk inside the body rather than trusting in-memory state.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import dagster as dg

# How many failing subjects a check result names (the rest are counted): metadata stays small.
NAMED_FAILURES = 50


@dataclass(frozen=True)
class Check:
    """One check: its name, what it asserts, and what a failure does."""

    name: str
    description: str
    blocking: bool = False  # a failure stops downstream steps of the same run
    warn: bool = False  # severity WARN instead of ERROR (upstream data problems we report, not fix)

    def spec(self, asset: str | dg.AssetKey) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=asset, blocking=self.blocking, description=self.description)

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        return dg.AssetCheckSeverity.WARN if self.warn else dg.AssetCheckSeverity.ERROR


def specs(asset: str, checks: Iterable[Check]) -> list[dg.AssetCheckSpec]:
    return [c.spec(asset) for c in checks]


@dataclass
class _Bound:
    bound: float
    at_least: bool
    worst_subject: Hashable | None = None
    worst_value: float | None = None

    def observe(self, subject: Hashable, value: float) -> bool:
        """Records ``value``; True when it is within the bound."""
        worse = self.worst_value is None or (value < self.worst_value if self.at_least else value > self.worst_value)
        if worse:
            self.worst_subject, self.worst_value = subject, value
        return value >= self.bound if self.at_least else value <= self.bound


class Findings:
    """What the checks of one run found, per subject (a shard key, a file name)."""

    def __init__(self, checks: Sequence[Check]):
        self.checks = {c.name: c for c in checks}
        self._failing: dict[str, dict[str, str]] = {c.name: {} for c in checks}
        self._subjects: dict[str, set] = {c.name: set() for c in checks}
        self._bounds: dict[str, _Bound] = {}
        self._metadata: dict[str, dict] = {c.name: {} for c in checks}

    def _known(self, check: str) -> None:
        if check not in self.checks:
            raise KeyError(f"no check {check!r}; this asset declares {sorted(self.checks)}")

    def passed(self, check: str, subject: Hashable) -> None:
        """``subject`` was checked and is fine."""
        self._known(check)
        self._subjects[check].add(subject)

    def fail(self, check: str, subject: Hashable, reason: str) -> None:
        self._known(check)
        self._subjects[check].add(subject)
        self._failing[check][str(subject)] = reason

    def expect(self, check: str, subject: Hashable, ok: bool, reason: str) -> None:
        """``passed`` when ``ok``, else ``fail`` with ``reason``."""
        if ok:
            self.passed(check, subject)
        else:
            self.fail(check, subject, reason)

    def bound(self, check: str, subject: Hashable, value: float, bound: float, *, at_least: bool = True,
              what: str = "value") -> None:
        """Fails ``subject`` when ``value`` is below (``at_least``) or above ``bound``; tracks the worst."""
        self._known(check)
        b = self._bounds.setdefault(check, _Bound(bound, at_least))
        op = ">=" if at_least else "<="
        self.expect(check, subject, b.observe(subject, value), f"{what} {value:.4g} not {op} {bound}")

    def failures_of(self, subject: Hashable) -> dict[str, str]:
        """Check name -> reason, for every declared check ``subject`` fails in this run."""
        key = str(subject)
        return {name: failing[key] for name, failing in self._failing.items() if key in failing}

    def add_metadata(self, check: str, **metadata) -> None:
        self._known(check)
        self._metadata[check].update(metadata)

    def result(self, check: str) -> dg.AssetCheckResult:
        c = self.checks[check]
        failing, subjects = self._failing[check], self._subjects[check]
        named = dict(list(failing.items())[:NAMED_FAILURES])
        md: dict = {"checked": len(subjects), "failing": len(failing), "failing_examples": dg.MetadataValue.json(named)}
        if check in self._bounds:
            b = self._bounds[check]
            md.update(bound=b.bound, worst_subject=str(b.worst_subject or ""),
                      worst_value=round(b.worst_value, 4) if b.worst_value is not None else float("nan"))
        md.update(self._metadata[check])
        if not subjects:
            description = "nothing was checked in this run"
        elif failing:
            description = f"{len(failing)} of {len(subjects)} failing: " + "; ".join(
                f"{k}: {v}" for k, v in list(failing.items())[:10])
        else:
            description = f"all {len(subjects)} pass"
        return dg.AssetCheckResult(check_name=check, passed=bool(subjects) and not failing, severity=c.severity,
                                   metadata=md, description=description)

    def results(self) -> list[dg.AssetCheckResult]:
        """One result per declared check (a check with nothing to look at fails: it can't vouch for data)."""
        return [self.result(name) for name in self.checks]
