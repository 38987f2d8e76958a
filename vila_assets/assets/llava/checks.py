"""Checks of the LLaVA family (convention: ``vila_assets.assets._checks``), and the checks every published
LLaVA-format JSON file gets (CC3M-595K, mix665k, the ShareGPT4V SFT file): the file is read back from disk
the way VILA's ``LazySupervisedDataset`` will read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vila_assets.assets._checks import Check, Findings
from vila_assets.core.llava_json import ValidationReport, image_problems, iter_json_array, validate_file

SCHEMA = Check("schema", "every record of the published file follows VILA's conversation contract", blocking=True)
COUNTS = Check("counts", "the published file holds the records this run wrote")
NO_IDENTICAL_CONVERSATIONS = Check(
    "no_identical_conversations", "no two records with the same images and turns (upstream data: reported)", warn=True)
IMAGES_PRESENT = Check("images_present", "every referenced image exists under the registry image_path")
# for a file whose image roots come from elsewhere (sft_image_roots): a gap is reported, not fatal
IMAGES_PRESENT_WARN = dataclasses.replace(IMAGES_PRESENT, warn=True)
IMAGES_DECODE = Check("images_decode", "every published record's image opens and decodes")
COVERAGE = Check("coverage", "each image root holds the images mix665k and the ShareGPT4V outputs reference there")

JSON_OUTPUT_CHECKS = (SCHEMA, COUNTS, NO_IDENTICAL_CONVERSATIONS)
CC3M_CHECKS = (*JSON_OUTPUT_CHECKS, IMAGES_PRESENT, IMAGES_DECODE)
MIX665K_CHECKS = JSON_OUTPUT_CHECKS
IMAGE_ROOT_CHECKS = (COVERAGE,)


def record_json_output_findings(findings: Findings, path: Path, image_folder: Path,
                                expected_records: int) -> ValidationReport:
    """Reads the published ``path`` back (images resolved against ``image_folder``) and records ``schema``,
    ``counts`` (against the ``expected_records`` the run wrote), ``no_identical_conversations`` and, when the
    asset declares it, ``images_present``. Returns the read-back report, for the asset's metadata."""
    presence = IMAGES_PRESENT.name in findings.checks
    report = validate_file(path, strict=False, image_folder=image_folder if presence else None)
    subject = path.name
    findings.expect(SCHEMA.name, subject, report.invalid == 0,
                    f"{report.invalid} of {report.records} records break the contract: " + "; ".join(report.problems[:3]))
    findings.add_metadata(SCHEMA.name, records=report.records, invalid=report.invalid,
                          first_problems="\n".join(report.problems[:5]))
    findings.expect(COUNTS.name, subject, report.valid == expected_records,
                    f"holds {report.valid} valid records, the run wrote {expected_records}")
    findings.add_metadata(COUNTS.name, in_file=report.valid, written=expected_records)
    findings.expect(NO_IDENTICAL_CONVERSATIONS.name, subject, report.duplicate_conversations == 0,
                    f"{report.duplicate_conversations} records repeat an earlier conversation")
    findings.add_metadata(NO_IDENTICAL_CONVERSATIONS.name, duplicates=report.duplicate_conversations,
                          duplicate_ids=report.duplicate_ids)
    if presence:
        _record_presence(findings, subject, report)
    return report


def _record_presence(findings: Findings, subject: str, report: ValidationReport) -> None:
    """``images_present`` per image root (a file without images has nothing missing)."""
    for r in report.presence:
        folder = "" if r.root_exists else "; the root folder does not exist"
        findings.expect(IMAGES_PRESENT.name, r.root, r.missing == 0, f"{r.missing} of {r.referenced} images missing{folder}")
    if not report.presence:
        findings.passed(IMAGES_PRESENT.name, subject)
    findings.add_metadata(IMAGES_PRESENT.name, referenced=report.images, missing=report.images_missing,
                          missing_examples=", ".join(report.missing_images))


def record_images_decode(findings: Findings, path: Path, image_folder: Path) -> None:
    """``images_decode``: every image the published ``path`` references opens and decodes."""
    names = sorted({r["image"] for r in iter_json_array(path) if isinstance(r.get("image"), str)})
    problems = image_problems(image_folder, names)
    for name in names:
        findings.expect(IMAGES_DECODE.name, name, name not in problems, problems.get(name, ""))
    if not names:  # a file without images has nothing to decode
        findings.passed(IMAGES_DECODE.name, path.name)
    findings.add_metadata(IMAGES_DECODE.name, images=len(names), bad=len(problems))
