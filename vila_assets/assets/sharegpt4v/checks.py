"""Checks of ``sharegpt4v_filtered`` (convention: ``vila_assets.assets._checks``): the LLaVA-format JSON
checks on the SFT file (``vila_assets.assets.llava.checks``), plus the family's own, which read the published
files back from disk. The family's three ask what each policy promises: ``curated`` that the written rules
hold and did not remove too much, ``vila`` that VILA's files were published unchanged."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg

from vila_assets.assets._checks import Check, Findings
from vila_assets.assets.llava.checks import IMAGES_PRESENT_WARN, JSON_OUTPUT_CHECKS
from vila_assets.core.llava_json import iter_json_array, sha256_file
from vila_assets.core.sharegpt4v import FilterReport, FilterRules, RecombineReport, SampleFilter

NO_RULE_VIOLATIONS = Check(
    "no_rule_violations", "curated: the published files hold nothing the filter rules (this run's) would remove; "
    "vila: what those rules would remove from VILA's files is reported, not enforced")
YIELD_PER_RULE = Check(
    "yield_per_rule", "curated: each filtered file keeps at least checks.min_yield of its input (removals per rule "
    "in metadata); vila: each published file is VILA's file unchanged (same sha256)")
RECOMBINATION = Check(
    "recombination", "curated: every detail-23k sample was found in mix665k and removed; vila: no detail-23k "
    "sample is left in VILA's SFT file", warn=True)

CHECKS = (*JSON_OUTPUT_CHECKS, IMAGES_PRESENT_WARN, NO_RULE_VIOLATIONS, YIELD_PER_RULE, RECOMBINATION)


def record_rule_violations(findings: Findings, files: list[Path], rules: FilterRules, *, enforce: bool = True) -> None:
    """``no_rule_violations``: each published file, read back, gives no rule a reason to fire. Not
    ``enforce``d (vila), the counts are only reported: VILA's files are what VILA trains on."""
    violations: dict[str, int] = {}
    for path in files:
        sf = SampleFilter(rules)
        found = Counter(why for why in (sf.reason(rec) for rec in iter_json_array(path)) if why)
        findings.expect(NO_RULE_VIOLATIONS.name, path.name, not enforce or not found,
                        ", ".join(f"{n} × {rule}" for rule, n in sorted(found.items())))
        violations.update({f"{path.name}:{rule}": n for rule, n in found.items()})
    findings.add_metadata(NO_RULE_VIOLATIONS.name, violations=dg.MetadataValue.json(violations), enforced=enforce)


def record_yields(findings: Findings, reports: dict[str, FilterReport], min_yield: float) -> None:
    """``yield_per_rule``: every filtered file (``reports``: by its metadata prefix) keeps ``min_yield``."""
    for prefix, report in reports.items():
        findings.bound(YIELD_PER_RULE.name, prefix, report.yield_, min_yield, what="yield")
        findings.add_metadata(YIELD_PER_RULE.name, **{f"{prefix}_yield": round(report.yield_, 4)},
                              **{f"{prefix}_removed_{rule}": n for rule, n in report.removed.items()})


def record_unchanged(findings: Findings, pairs: dict[str, tuple[Path, Path]]) -> None:
    """``yield_per_rule`` under vila: each published file (``pairs``: name -> (source, published)), read
    back, has its source's bytes."""
    for name, (source, published) in pairs.items():
        want, got = sha256_file(source), sha256_file(published)
        findings.expect(YIELD_PER_RULE.name, name, want == got,
                        f"{published.name} sha256 {got[:12]} != source {want[:12]}")
        findings.add_metadata(YIELD_PER_RULE.name, **{f"{name}_sha256": got})


def record_recombination(findings: Findings, rec: RecombineReport) -> None:
    findings.expect(RECOMBINATION.name, "detail23k", rec.detail_unmatched == 0 and rec.detail_removed > 0,
                    f"{rec.detail_removed} removed, {rec.detail_unmatched} not found in mix665k")
    findings.add_metadata(RECOMBINATION.name, detail23k_removed=rec.detail_removed,
                          detail23k_unmatched=rec.detail_unmatched)


def record_detail_absent(findings: Findings, found: list[str], detail_samples: int) -> None:
    """``recombination`` under vila: none of the ``detail_samples`` detail-23k samples is in VILA's SFT file
    (``found``: the ids of those that are)."""
    findings.expect(RECOMBINATION.name, "detail23k", not found and detail_samples > 0,
                    f"{len(found)} of {detail_samples} detail-23k samples are still in the SFT file"
                    if found else "no detail-23k samples to look for")
    findings.add_metadata(RECOMBINATION.name, detail23k_in_sft=len(found), detail23k_samples=detail_samples,
                          detail23k_ids_in_sft=", ".join(found[:10]))
