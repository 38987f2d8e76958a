"""LLaVA data for projector alignment (CC3M-595K) and SFT (LLaVA-1.5 mix665k), plus their image roots.

Assets:
- ``sft_image_roots``: image roots (``coco/train2017``, ``gqa/images``...) under ``playground/data``, fetched
  from a hub repo of per-root zips when one is configured (the sample world publishes one); always reports
  what is on disk.
- ``llava_cc3m_595k``: ``chat.json`` + ``images.zip`` (revision-pinned), safely unzipped, published as
  ``LLaVA-Pretrain/LLaVA-CC3M-Pretrain-595K.json`` + ``images/``; records whose image is missing or does not
  decode are reported and left out, so the loader never meets them.
- ``llava_mix665k``: ``llava_v1_5_mix665k.json`` at its registry path after a schema check of every record;
  reports which image roots it references and how many of those images are present.

Malformed records fail the run, naming file, record index and id (``strict``; turn it off to publish the
valid records and count the rest).
"""


import json
import os
import shutil
from pathlib import Path

import dagster as dg

from vila_assets.assets._metadata import md_table
from vila_assets.core.atomic import atomic_path
from vila_assets.core.llava_json import (
    ValidationReport,
    check_records,
    image_problems,
    iter_json_array,
    presence_markdown,
    sha256_file,
    validate_file,
    write_json_array,
)
from vila_assets.core.safe_zip import ZipLimits, safe_extract, safe_relpath
from vila_assets.core.vila_format import REGISTRY, RecordError, registry_path, write_json
from vila_assets.demo_plan import DemoStep
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot

FAMILY = "llava"
CC3M_REPO = "liuhaotian/LLaVA-CC3M-Pretrain-595K"
INSTRUCT_REPO = "liuhaotian/LLaVA-Instruct-150K"
MIX665K_FILE = "llava_v1_5_mix665k.json"
IMAGE_ROOTS_ENV = "VILA_SFT_IMAGES_REPO"


class RevisionConfig(dg.Config):
    revision: str = "main"  # branch, tag or commit; resolved to a sha and recorded in metadata
    strict: bool = True  # a malformed record fails the run (file + record id); False: count and skip it


class Cc3mConfig(RevisionConfig):
    drop_bad_images: bool = True  # leave out records whose image is missing or undecodable (reported)
    max_zip_entries: int = 2_000_000
    max_zip_bytes: int = 64 << 30


class ImageRootsConfig(dg.Config):
    repo: str | None = None  # hub dataset repo of per-root zips; None: $VILA_SFT_IMAGES_REPO; "" none
    revision: str = "main"


def fail_on_record_error(exc: RecordError) -> dg.Failure:
    return dg.Failure(description=f"malformed input record: {exc}", metadata={"error": str(exc)})


# --- image roots -------------------------------------------------------------------------------------------


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    description="Image roots under playground/data (coco/train2017, gqa/images, ...) from a hub repo of zips.",
)
def sft_image_roots(
    context: dg.AssetExecutionContext, config: ImageRootsConfig, hub: HubClient, data_root: DataRoot
) -> dg.MaterializeResult:
    repo = os.environ.get(IMAGE_ROOTS_ENV, "") if config.repo is None else config.repo
    base = data_root.playground()
    fetched: list[tuple[str, int]] = []
    sha = None
    if repo:
        sha = hub.resolve_revision(repo, config.revision)
        index_path = hub.download(repo, "image_roots.json", sha)
        index = json.loads(index_path.read_text())
        for root, zip_name in sorted(index.items()):
            try:
                rel = safe_relpath(root)
            except ValueError as exc:
                raise dg.Failure(f"{repo}@{sha} image_roots.json: root {root!r}: {exc}") from None
            summary = safe_extract(hub.download(repo, zip_name, sha), base / rel)
            fetched.append((rel.as_posix(), summary.files))
            context.log.info("extracted %s files into %s", summary.files, base / rel)
    md = {
        "images_repo": repo or "(none configured)",
        "roots_fetched": len(fetched),
        "images": sum(n for _, n in fetched),
        "path": dg.MetadataValue.path(str(base)),
    }
    if sha:
        md["revision_sha"] = sha
    if fetched:
        md["roots"] = md_table(("root", "images"), fetched)
    return dg.MaterializeResult(metadata=md)


# --- CC3M-595K ----------------------------------------------------------------------------------------------


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    description="LLaVA-CC3M-Pretrain-595K (projector alignment): chat.json renamed + images.zip safely unzipped.",
)
def llava_cc3m_595k(
    context: dg.AssetExecutionContext, config: Cc3mConfig, hub: HubClient, data_root: DataRoot
) -> dg.MaterializeResult:
    sha = hub.resolve_revision(CC3M_REPO, config.revision)
    chat = hub.download(CC3M_REPO, "chat.json", sha)
    images_zip = hub.download(CC3M_REPO, "images.zip", sha)
    out_json = registry_path("llava_1_5_align", data_root.path())
    images_dir = data_root.path(REGISTRY["llava_1_5_align"].image_path.removeprefix("./"))

    report = ValidationReport(Path(chat))
    names: set[str] = set()
    try:  # pass 1: validate every record and collect image names (records are not held in memory)
        for rec in check_records(chat, iter_json_array(chat), strict=config.strict, report=report):
            if isinstance(rec.get("image"), str):
                names.add(rec["image"])
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    # only now touch the published images: a malformed chat.json leaves the previous tree in place
    limits = ZipLimits(max_entries=config.max_zip_entries, max_total_bytes=config.max_zip_bytes)
    extracted = safe_extract(images_zip, images_dir, limits)
    problems = image_problems(images_dir, sorted(names))
    # pass 2: publish the valid records, without those whose image the loader could not open
    n = write_json_array(
        out_json,
        (
            r
            for r in check_records(chat, iter_json_array(chat), strict=False)
            if not (config.drop_bad_images and r.get("image") in problems)
        ),
    )
    write_json(
        data_root.reports(FAMILY, "cc3m_595k_image_problems.json"),
        {"revision_sha": sha, "problems": dict(sorted(problems.items())), "invalid_records": report.problems},
    )
    missing = sum(1 for p in problems.values() if p == "missing")
    return dg.MaterializeResult(
        metadata={
            "revision_sha": sha,
            "records_in": report.records,
            "records": n,
            "invalid_records": report.invalid,
            "images_extracted": extracted.files,
            "images_missing": missing,
            "images_undecodable": len(problems) - missing,
            "records_dropped_bad_image": report.valid - n,
            "yield": round(n / report.records, 4) if report.records else 0.0,
            "bad_images": dg.MetadataValue.json(dict(sorted(problems.items())[:10])),
            "path": dg.MetadataValue.path(str(out_json)),
            "images_path": dg.MetadataValue.path(str(images_dir)),
            "sha256": sha256_file(out_json),
        }
    )


# --- mix665k -------------------------------------------------------------------------------------------------


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    deps=[sft_image_roots],
    description="LLaVA-1.5 mix665k (SFT) at its registry path, every record schema-checked; image-root report.",
)
def llava_mix665k(
    context: dg.AssetExecutionContext, config: RevisionConfig, hub: HubClient, data_root: DataRoot
) -> dg.MaterializeResult:
    sha = hub.resolve_revision(INSTRUCT_REPO, config.revision)
    src = hub.download(INSTRUCT_REPO, MIX665K_FILE, sha)
    out = registry_path("llava_1_5_sft", data_root.path())
    image_folder = data_root.path(REGISTRY["llava_1_5_sft"].image_path.removeprefix("./"))
    try:
        report = validate_file(src, strict=config.strict, image_folder=image_folder)
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    if report.invalid:
        n = write_json_array(out, check_records(src, iter_json_array(src), strict=False))
    else:  # every record is valid: publish upstream's bytes unchanged
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
        n = report.records
    write_json(
        data_root.reports(FAMILY, "mix665k_image_roots.json"),
        {
            "revision_sha": sha,
            "roots": [
                {"root": r.root, "referenced": r.referenced, "present": r.present, "folder_exists": r.root_exists}
                for r in report.presence
            ],
            "missing_examples": report.missing_images,
            "invalid_records": report.problems,
        },
    )
    return dg.MaterializeResult(
        metadata={
            "revision_sha": sha,
            "records": n,
            "invalid_records": report.invalid,
            "with_image": report.with_image,
            "text_only": report.text_only,
            "duplicate_conversations": report.duplicate_conversations,
            "images_referenced": report.images,
            "images_missing": report.images_missing,
            "image_roots": presence_markdown(report.presence),
            "path": dg.MetadataValue.path(str(out)),
            "sha256": sha256_file(out),
        }
    )


# --- checks: read the published files back the way VILA does ----------------------------------------------------


def json_output_checks(
    asset_key: str, registry_name: str, *, images_must_exist: bool, blocking_schema: bool = True
) -> dg.AssetChecksDefinition:
    """Checks on a published LLaVA-format JSON: schema of every record, count equals the materialization's
    ``records``, no identical conversations (WARN: upstream data), and referenced images present."""
    specs = [
        dg.AssetCheckSpec("schema", asset=asset_key, blocking=blocking_schema,
                          description="every record follows VILA's conversation contract"),
        dg.AssetCheckSpec("counts", asset=asset_key, description="file holds the count the materialization reported"),
        dg.AssetCheckSpec("no_identical_conversations", asset=asset_key,
                          description="no two records with the same images and turns"),
        dg.AssetCheckSpec("images_present", asset=asset_key,
                          description="every referenced image exists under the registry image_path"),
    ]

    @dg.multi_asset_check(specs=specs, name=f"{asset_key}_output_checks")
    def _checks(context: dg.AssetCheckExecutionContext, data_root: DataRoot):
        path = registry_path(registry_name, data_root.path())
        folder = data_root.path(REGISTRY[registry_name].image_path.removeprefix("./"))
        report = validate_file(path, strict=False, image_folder=folder)
        yield dg.AssetCheckResult(
            check_name="schema", asset_key=asset_key, passed=report.invalid == 0,
            metadata={"records": report.records, "invalid": report.invalid, "first_problems": "\n".join(report.problems[:5])},
        )
        ev = context.instance.get_latest_materialization_event(dg.AssetKey(asset_key))
        reported = ev.asset_materialization.metadata["records"].value if ev and ev.asset_materialization else None
        yield dg.AssetCheckResult(
            check_name="counts", asset_key=asset_key, passed=reported == report.valid,
            metadata={"in_file": report.valid, "reported": reported if reported is not None else -1},
        )
        yield dg.AssetCheckResult(
            check_name="no_identical_conversations", asset_key=asset_key,
            passed=report.duplicate_conversations == 0, severity=dg.AssetCheckSeverity.WARN,
            metadata={"duplicates": report.duplicate_conversations, "duplicate_ids": report.duplicate_ids},
        )
        yield dg.AssetCheckResult(
            check_name="images_present", asset_key=asset_key,
            passed=report.images_missing == 0,
            severity=dg.AssetCheckSeverity.ERROR if images_must_exist else dg.AssetCheckSeverity.WARN,
            metadata={"referenced": report.images, "missing": report.images_missing,
                      "missing_examples": ", ".join(report.missing_images)},
        )

    return _checks


@dg.asset_check(asset=llava_cc3m_595k, description="every published record's image opens and decodes")
def cc3m_images_decode(data_root: DataRoot) -> dg.AssetCheckResult:
    path = registry_path("llava_1_5_align", data_root.path())
    folder = data_root.path(REGISTRY["llava_1_5_align"].image_path.removeprefix("./"))
    names = sorted({r["image"] for r in iter_json_array(path) if isinstance(r.get("image"), str)})
    problems = image_problems(folder, names)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"images": len(names), "bad": len(problems), "examples": dg.MetadataValue.json(dict(list(problems.items())[:5]))},
    )


cc3m_checks = json_output_checks("llava_cc3m_595k", "llava_1_5_align", images_must_exist=True)
mix665k_checks = json_output_checks("llava_mix665k", "llava_1_5_sft", images_must_exist=False)

defs = dg.Definitions(
    assets=[sft_image_roots, llava_cc3m_595k, llava_mix665k],
    asset_checks=[cc3m_checks, cc3m_images_decode, mix665k_checks],
)


def demo_steps(resources: dict, scale: str) -> list[DemoStep]:
    return [
        DemoStep("llava: image roots", ("sft_image_roots",), order=5),
        DemoStep("llava: CC3M-595K + mix665k", ("llava_cc3m_595k", "llava_mix665k"), order=10),
    ]
