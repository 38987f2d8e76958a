"""LLaVA data for projector alignment (CC3M-595K) and SFT (LLaVA-1.5 mix665k), plus their image roots.

Assets:
- ``sft_image_roots``: image roots (``coco/train2017``, ``gqa/images``...) under ``playground/data``, fetched
  from the hub repo of per-root zips that ``llava_source.image_roots_repo`` names (the sample world
  publishes one; empty: none configured, nothing is fetched).
- ``llava_cc3m_595k``: ``chat.json`` + ``images.zip`` (revision-pinned), safely unzipped, published as
  ``LLaVA-Pretrain/LLaVA-CC3M-Pretrain-595K.json`` + ``images/``; records whose image is missing or does not
  decode are reported and left out, so the loader never meets them.
- ``llava_mix665k``: ``llava_v1_5_mix665k.json`` at its registry path after a schema check of every record;
  reports which image roots it references and how many of those images are present.

Malformed records fail the run, naming file, record index and id (``strict``; turn it off to publish the
valid records and count the rest). Every published JSON file is read back from disk for its checks
(``checks.py``).
"""


import json
import shutil
from pathlib import Path

import dagster as dg

from vila_assets.assets._checks import Findings
from vila_assets.assets._metadata import md_table, path_value
from vila_assets.assets.llava.checks import (
    CC3M_CHECKS,
    MIX665K_CHECKS,
    record_images_decode,
    record_json_output_findings,
)
from vila_assets.assets.llava.config import Cc3mConfig, RecordsConfig
from vila_assets.assets.llava.layout import FAMILY, LlavaLayout
from vila_assets.assets.llava.metadata import presence_table
from vila_assets.assets.llava.sources import CC3M_CHAT, CC3M_IMAGES_ZIP, IMAGE_ROOTS_INDEX, MIX665K_FILE, LlavaSource
from vila_assets.core.atomic import atomic_path
from vila_assets.core.llava_json import (
    ValidationReport,
    check_records,
    image_problems,
    iter_json_array,
    sha256_file,
    validate_file,
    write_json_array,
)
from vila_assets.core.safe_zip import ZipLimits, safe_extract, safe_relpath
from vila_assets.core.vila_format import RecordError, write_json
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot


def fail_on_record_error(exc: RecordError) -> dg.Failure:
    return dg.Failure(description=f"malformed input record: {exc}", metadata={"error": str(exc)})


# --- image roots -------------------------------------------------------------------------------------------


def _extract_image_roots(context: dg.AssetExecutionContext, hub: HubClient, repo: str, sha: str,
                         layout: LlavaLayout) -> list[tuple[str, int]]:
    """Every root in ``repo``'s index, safely unzipped into place and published: ``(root, files)`` each."""
    index = json.loads(hub.download(repo, IMAGE_ROOTS_INDEX, sha).read_text())
    fetched = []
    for root, zip_name in sorted(index.items()):
        try:
            rel = safe_relpath(root).as_posix()
        except ValueError as exc:
            raise dg.Failure(f"{repo}@{sha} {IMAGE_ROOTS_INDEX}: root {root!r}: {exc}") from None
        dest = layout.image_root(rel)
        summary = safe_extract(hub.download(repo, zip_name, sha), dest)
        layout.data_root.publish_dir(dest)
        fetched.append((rel, summary.files))
        context.log.info("extracted %s files into %s", summary.files, dest)
    return fetched


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    description="Image roots under playground/data (coco/train2017, gqa/images, ...) from a hub repo of zips.",
)
def sft_image_roots(
    context: dg.AssetExecutionContext, hub: HubClient, llava_source: LlavaSource, data_root: DataRoot
) -> dg.MaterializeResult:
    layout = LlavaLayout(data_root)
    repo = llava_source.image_roots_repo
    sha = hub.resolve_revision(repo, llava_source.image_roots_revision) if repo else None
    fetched = _extract_image_roots(context, hub, repo, sha, layout) if repo else []
    md = {
        "images_repo": repo or "(none configured)",
        "roots_fetched": len(fetched),
        "images": sum(n for _, n in fetched),
        "path": path_value(data_root, layout.image_root()),
    }
    if sha:
        md["revision_sha"] = sha
    if fetched:
        md["roots"] = md_table(("root", "images"), fetched)
    return dg.MaterializeResult(metadata=md)


# --- CC3M-595K ----------------------------------------------------------------------------------------------


def _cc3m_image_names(chat: Path, strict: bool, report: ValidationReport) -> set[str]:
    """Pass 1: validate every record and collect the image names (records are not held in memory)."""
    names: set[str] = set()
    try:
        for rec in check_records(chat, iter_json_array(chat), strict=strict, report=report):
            if isinstance(rec.get("image"), str):
                names.add(rec["image"])
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    return names


def _write_cc3m(chat: Path, out: Path, dropped: dict[str, str]) -> int:
    """Pass 2: the valid records, without those whose image is in ``dropped``."""
    def keep(rec: dict) -> bool:
        image = rec.get("image")
        return not (isinstance(image, str) and image in dropped)

    return write_json_array(out, (r for r in check_records(chat, iter_json_array(chat), strict=False) if keep(r)))


def _cc3m_metadata(sha: str, report: ValidationReport, n: int, extracted_files: int, problems: dict[str, str],
                   layout: LlavaLayout) -> dict:
    missing = sum(1 for p in problems.values() if p == "missing")
    url = layout.data_root.url
    return {
        "revision_sha": sha,
        "records_in": report.records,
        "records": n,
        "invalid_records": report.invalid,
        "images_extracted": extracted_files,
        "images_missing": missing,
        "images_undecodable": len(problems) - missing,
        "records_dropped_bad_image": report.valid - n,
        "yield": round(n / report.records, 4) if report.records else 0.0,
        "bad_images": dg.MetadataValue.json(dict(sorted(problems.items())[:10])),
        "path": dg.MetadataValue.path(url(layout.cc3m_json)),
        "images_path": dg.MetadataValue.path(url(layout.cc3m_images)),
        "sha256": sha256_file(layout.cc3m_json),
    }


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    check_specs=[c.spec("llava_cc3m_595k") for c in CC3M_CHECKS],
    description="LLaVA-CC3M-Pretrain-595K (projector alignment): chat.json renamed + images.zip safely unzipped.",
)
def llava_cc3m_595k(
    context: dg.AssetExecutionContext, config: Cc3mConfig, hub: HubClient, llava_source: LlavaSource,
    data_root: DataRoot,
) -> dg.MaterializeResult:
    layout = LlavaLayout(data_root)
    repo = llava_source.cc3m_repo
    sha = hub.resolve_revision(repo, llava_source.cc3m_revision)
    chat = hub.download(repo, CC3M_CHAT, sha)
    images_zip = hub.download(repo, CC3M_IMAGES_ZIP, sha)
    report = ValidationReport(Path(chat))
    names = _cc3m_image_names(chat, config.strict, report)
    # only now touch the images: a malformed chat.json leaves the previous tree in place
    limits = ZipLimits(max_entries=config.max_zip_entries, max_total_bytes=config.max_zip_bytes)
    extracted = safe_extract(images_zip, layout.cc3m_images, limits)
    problems = image_problems(layout.cc3m_images, sorted(names))
    n = _write_cc3m(chat, layout.cc3m_json, problems if config.drop_bad_images else {})
    write_json(layout.cc3m_report,
               {"revision_sha": sha, "problems": dict(sorted(problems.items())), "invalid_records": report.problems})
    data_root.publish_dir(layout.cc3m_images)  # before the JSON that points at them
    data_root.publish(layout.cc3m_json, layout.cc3m_report)
    findings = Findings(CC3M_CHECKS)
    record_json_output_findings(findings, layout.cc3m_json, layout.cc3m_images, n)
    record_images_decode(findings, layout.cc3m_json, layout.cc3m_images)
    return dg.MaterializeResult(metadata=_cc3m_metadata(sha, report, n, extracted.files, problems, layout),
                                check_results=findings.results())


# --- mix665k -------------------------------------------------------------------------------------------------


def _write_mix665k(src: Path, out: Path, report: ValidationReport) -> int:
    if report.invalid:
        return write_json_array(out, check_records(src, iter_json_array(src), strict=False))
    with atomic_path(out) as tmp:  # every record is valid: publish upstream's bytes unchanged
        shutil.copyfile(src, tmp)
    return report.records


def _roots_report(sha: str, published: ValidationReport, src: ValidationReport) -> dict:
    return {
        "revision_sha": sha,
        "roots": [
            {"root": r.root, "referenced": r.referenced, "present": r.present, "folder_exists": r.root_exists}
            for r in published.presence
        ],
        "missing_examples": published.missing_images,
        "invalid_records": src.problems,
    }


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    deps=[sft_image_roots],
    check_specs=[c.spec("llava_mix665k") for c in MIX665K_CHECKS],
    description="LLaVA-1.5 mix665k (SFT) at its registry path, every record schema-checked; image-root report.",
)
def llava_mix665k(
    context: dg.AssetExecutionContext, config: RecordsConfig, hub: HubClient, llava_source: LlavaSource,
    data_root: DataRoot,
) -> dg.MaterializeResult:
    layout = LlavaLayout(data_root)
    repo = llava_source.instruct_repo
    sha = hub.resolve_revision(repo, llava_source.instruct_revision)
    src = hub.download(repo, MIX665K_FILE, sha)
    try:
        src_report = validate_file(src, strict=config.strict)
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    n = _write_mix665k(src, layout.mix665k_json, src_report)
    findings = Findings(MIX665K_CHECKS)
    # the published file read back: its counts and image presence are what VILA will see
    published = record_json_output_findings(findings, layout.mix665k_json, layout.mix665k_images, n)
    write_json(layout.mix665k_report, _roots_report(sha, published, src_report))
    data_root.publish(layout.mix665k_json, layout.mix665k_report)
    metadata = {
        "revision_sha": sha,
        "records": n,
        "invalid_records": src_report.invalid,
        "with_image": published.with_image,
        "text_only": published.text_only,
        "duplicate_conversations": published.duplicate_conversations,
        "images_referenced": published.images,
        "images_missing": published.images_missing,
        "image_roots": presence_table(published.presence),
        "path": path_value(data_root, layout.mix665k_json),
        "sha256": sha256_file(layout.mix665k_json),
    }
    return dg.MaterializeResult(metadata=metadata, check_results=findings.results())
