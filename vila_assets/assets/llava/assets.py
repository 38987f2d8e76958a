"""LLaVA data for projector alignment (CC3M-595K) and SFT (LLaVA-1.5 mix665k); the image roots they and
ShareGPT4V need are ``image_roots.py``.

Assets (sources: ``llava_source``, each a hub repo at a pinned revision, a local directory or an fsspec URL):
- ``llava_cc3m_595k``: ``chat.json`` + ``images.zip``, safely unzipped, published as
  ``LLaVA-Pretrain/LLaVA-CC3M-Pretrain-595K.json`` + ``images/``; records whose image is missing or does not
  decode are reported and left out, so the loader never meets them. With none left out, the published file
  is ``chat.json``'s bytes (VILA's ``mv``).
- ``llava_mix665k``: ``llava_v1_5_mix665k.json`` at its registry path after a schema check of every record
  (upstream's bytes when every record is valid); reports how many images it references per image root.

Malformed records fail the run, naming file, record index and id (``strict``; turn it off to publish the
valid records and count the rest). Every published JSON file is read back from disk for its checks
(``checks.py``).
"""


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
from vila_assets.assets.llava.sources import CC3M_CHAT, CC3M_IMAGES_ZIP, MIX665K_FILE, LlavaSource
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
from vila_assets.core.safe_zip import UnsafeZipError, ZipLimits, safe_extract
from vila_assets.core.source_tree import SourceError, SourceTree
from vila_assets.core.vila_format import RecordError, write_json
from vila_assets.core.hub import HubError
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot


def fail_on_record_error(exc: RecordError) -> dg.Failure:
    return dg.Failure(description=f"malformed input record: {exc}", metadata={"error": str(exc)})


def fetch_source(tree: SourceTree, relpath: str) -> Path:
    """One file of a source tree; an unreachable source or missing file fails the run, naming both."""
    try:
        return tree.fetch(relpath)
    except (SourceError, HubError) as exc:
        raise dg.Failure(description=f"cannot read {tree.describe(relpath)}: {exc}") from exc


def source_metadata(tree: SourceTree) -> dict:
    """Where a run read from: the location and, for a hub repo, the commit it was pinned to."""
    md = {"source": tree.describe()}
    if tree.revision:
        md["revision_sha"] = tree.revision
    return md


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


def _copy_verbatim(src: Path, out: Path) -> None:
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)


def _write_cc3m(chat: Path, out: Path, report: ValidationReport, dropped: dict[str, str]) -> int:
    """Pass 2: the valid records, without those whose image is in ``dropped``; with nothing left out,
    ``chat.json``'s own bytes (VILA renames the file)."""
    names = _image_names_in(chat) if dropped else set()
    if not report.invalid and not (names & set(dropped)):
        _copy_verbatim(chat, out)
        return report.records

    def keep(rec: dict) -> bool:
        image = rec.get("image")
        return not (isinstance(image, str) and image in dropped)

    return write_json_array(out, (r for r in check_records(chat, iter_json_array(chat), strict=False) if keep(r)))


def _image_names_in(chat: Path) -> set[str]:
    records = check_records(chat, iter_json_array(chat), strict=False)
    return {r["image"] for r in records if isinstance(r.get("image"), str)}


def _cc3m_metadata(source: dict, report: ValidationReport, n: int, extracted_files: int, problems: dict[str, str],
                   layout: LlavaLayout) -> dict:
    missing = sum(1 for p in problems.values() if p == "missing")
    url = layout.data_root.url
    return {
        **source,
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


def _extract_cc3m(images_zip: Path, layout: LlavaLayout, config: Cc3mConfig):
    limits = ZipLimits(max_entries=config.max_zip_entries, max_total_bytes=config.max_zip_bytes)
    try:
        return safe_extract(images_zip, layout.cc3m_images, limits)
    except UnsafeZipError as exc:
        raise dg.Failure(description=str(exc)) from exc


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
    tree = llava_source.tree("cc3m", hub, data_root)
    chat, images_zip = fetch_source(tree, CC3M_CHAT), fetch_source(tree, CC3M_IMAGES_ZIP)
    source = source_metadata(tree)
    report = ValidationReport(Path(chat))
    names = _cc3m_image_names(chat, config.strict, report)
    # only now touch the images: a malformed chat.json leaves the previous tree in place
    extracted = _extract_cc3m(images_zip, layout, config)
    problems = image_problems(layout.cc3m_images, sorted(names))
    n = _write_cc3m(chat, layout.cc3m_json, report, problems if config.drop_bad_images else {})
    write_json(layout.cc3m_report,
               {**source, "problems": dict(sorted(problems.items())), "invalid_records": report.problems})
    data_root.publish_dir(layout.cc3m_images)  # before the JSON that points at them
    data_root.publish(layout.cc3m_json, layout.cc3m_report)
    findings = Findings(CC3M_CHECKS)
    record_json_output_findings(findings, layout.cc3m_json, layout.cc3m_images, n)
    record_images_decode(findings, layout.cc3m_json, layout.cc3m_images)
    return dg.MaterializeResult(metadata=_cc3m_metadata(source, report, n, extracted.files, problems, layout),
                                check_results=findings.results())


# --- mix665k -------------------------------------------------------------------------------------------------


def _write_mix665k(src: Path, out: Path, report: ValidationReport) -> int:
    if report.invalid:
        return write_json_array(out, check_records(src, iter_json_array(src), strict=False))
    _copy_verbatim(src, out)  # every record is valid: publish upstream's bytes unchanged
    return report.records


def _roots_report(source: dict, published: ValidationReport, src: ValidationReport) -> dict:
    return {**source, "roots": dict(sorted(published.roots.items())), "invalid_records": src.problems}


def _referenced_table(report: ValidationReport) -> dg.MetadataValue:
    return md_table(("image root", "images referenced"), [(f"`{r}`", n) for r, n in sorted(report.roots.items())])


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    check_specs=[c.spec("llava_mix665k") for c in MIX665K_CHECKS],
    description="LLaVA-1.5 mix665k (SFT) at its registry path, every record schema-checked; images per root.",
)
def llava_mix665k(
    context: dg.AssetExecutionContext, config: RecordsConfig, hub: HubClient, llava_source: LlavaSource,
    data_root: DataRoot,
) -> dg.MaterializeResult:
    layout = LlavaLayout(data_root)
    tree = llava_source.tree("instruct", hub, data_root)
    src, source = fetch_source(tree, MIX665K_FILE), source_metadata(tree)
    try:
        src_report = validate_file(src, strict=config.strict)
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    n = _write_mix665k(src, layout.mix665k_json, src_report)
    findings = Findings(MIX665K_CHECKS)
    # the published file read back: its counts are what VILA will see (its images: sft_image_roots' coverage)
    published = record_json_output_findings(findings, layout.mix665k_json, layout.mix665k_images, n)
    write_json(layout.mix665k_report, _roots_report(source, published, src_report))
    data_root.publish(layout.mix665k_json, layout.mix665k_report)
    metadata = {
        **source,
        "records": n,
        "invalid_records": src_report.invalid,
        "with_image": published.with_image,
        "text_only": published.text_only,
        "duplicate_conversations": published.duplicate_conversations,
        "images_referenced": published.images,
        "image_roots": _referenced_table(published),
        "path": path_value(data_root, layout.mix665k_json),
        "sha256": sha256_file(layout.mix665k_json),
    }
    return dg.MaterializeResult(metadata=metadata, check_results=findings.results())
