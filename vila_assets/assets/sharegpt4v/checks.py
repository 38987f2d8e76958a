"""Checks of ``sharegpt4v_filtered`` (convention: ``vila_assets.assets._checks``): the LLaVA-format JSON
checks on the SFT file (``vila_assets.assets.llava.checks``), plus the filter's own, which read the
published files back from disk."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg

from vila_assets.assets._checks import Check, Findings
from vila_assets.assets.llava.checks import IMAGES_PRESENT_WARN, JSON_OUTPUT_CHECKS
from vila_assets.core.llava_json import iter_json_array
from vila_assets.core.sharegpt4v import FilterReport, FilterRules, RecombineReport, SampleFilter

NO_RULE_VIOLATIONS = Check(
    "no_rule_violations", "the published files hold nothing the filter rules (this run's) would remove")
YIELD_PER_RULE = Check(
    "yield_per_rule", "each filtered file keeps at least checks.min_yield of its input (removals per rule in metadata)")
RECOMBINATION = Check(
    "recombination", "every detail-23k sample was found in mix665k and removed", warn=True)

CHECKS = (*JSON_OUTPUT_CHECKS, IMAGES_PRESENT_WARN, NO_RULE_VIOLATIONS, YIELD_PER_RULE, RECOMBINATION)


def record_rule_violations(findings: Findings, files: list[Path], rules: FilterRules) -> None:
    """``no_rule_violations``: each published file, read back, gives no rule a reason to fire."""
    violations: dict[str, int] = {}
    for path in files:
        sf = SampleFilter(rules)
        found = Counter(why for why in (sf.reason(rec) for rec in iter_json_array(path)) if why)
        findings.expect(NO_RULE_VIOLATIONS.name, path.name, not found,
                        ", ".join(f"{n} × {rule}" for rule, n in sorted(found.items())))
        violations.update({f"{path.name}:{rule}": n for rule, n in found.items()})
    findings.add_metadata(NO_RULE_VIOLATIONS.name, violations=dg.MetadataValue.json(violations))


def record_yields(findings: Findings, reports: dict[str, FilterReport], min_yield: float) -> None:
    """``yield_per_rule``: every filtered file (``reports``: by its metadata prefix) keeps ``min_yield``."""
    for prefix, report in reports.items():
        findings.bound(YIELD_PER_RULE.name, prefix, report.yield_, min_yield, what="yield")
        findings.add_metadata(YIELD_PER_RULE.name, **{f"{prefix}_yield": round(report.yield_, 4)},
                              **{f"{prefix}_removed_{rule}": n for rule, n in report.removed.items()})


def record_recombination(findings: Findings, rec: RecombineReport) -> None:
    findings.expect(RECOMBINATION.name, "detail23k", rec.detail_unmatched == 0 and rec.detail_removed > 0,
                    f"{rec.detail_removed} removed, {rec.detail_unmatched} not found in mix665k")
    findings.add_metadata(RECOMBINATION.name, detail23k_removed=rec.detail_removed,
                          detail23k_unmatched=rec.detail_unmatched)
