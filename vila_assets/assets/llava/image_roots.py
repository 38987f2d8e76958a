"""``sft_image_roots``: every image folder the SFT data needs, one partition per root, in VILA's layout
under ``playground/data/<root>`` (``core.image_roots`` says where each comes from and how it is put in
place).

A run covers one root or a range of them. Per root it fetches (resumable, verified downloads of the
configured archives; LLaVA-Pretrain's ``images.zip`` from ``llava_source``; OCR-VQA's covers crawled from
``dataset.json``), puts the root in place atomically, publishes it, and measures coverage: the share of
the images that mix665k and the ShareGPT4V outputs (its upstream assets) reference under the root that
are there. The ``coverage`` check fails a root below ``checks.min_coverage`` (crawled roots:
``checks.min_coverage_crawled``); every missing name is in ``reports/llava/image_roots/<root>.json``.
"""


import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from vila_assets.assets._metadata import md_table, path_value
from vila_assets.assets._sharded import ShardedRun, ranged
from vila_assets.assets.llava.checks import COVERAGE, IMAGE_ROOT_CHECKS
from vila_assets.assets.llava.config import ImageRootsConfig
from vila_assets.assets.llava.layout import FAMILY, LlavaLayout
from vila_assets.assets.llava.sources import OCR_VQA_DRIVE_FOLDER, PRETRAIN_IMAGES_ZIP, ImageRootsSource, LlavaSource
from vila_assets.core.crawl import ProgressLog, crawl
from vila_assets.core.image_roots import (
    CRAWLED_ROOT,
    HUB_ROOT,
    IMAGE_ROOTS,
    ArchiveSpec,
    RootError,
    count_files,
    coverage,
    field_name,
    install_root,
    references_by_root,
    staging_dir,
)
from vila_assets.core.atomic import replace_dir
from vila_assets.core.llava_json import JsonArrayError
from vila_assets.core.ocr_vqa import OcrVqaError, book_id, cover_config, read_covers, save_covers, write_crawl_input
from vila_assets.core.ranged_download import DownloadError, download
from vila_assets.core.safe_zip import UnsafeZipError, ZipLimits
from vila_assets.core.source_tree import SourceError
from vila_assets.core.vila_format import write_json
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.core.hub import HubError
from vila_assets.resources.hub import HubClient
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import DataRoot

ASSET = "sft_image_roots"
MIX665K_ASSET = "llava_mix665k"
SHAREGPT4V_ASSET = "sharegpt4v_filtered"
image_root_partitions = dg.StaticPartitionsDefinition(list(IMAGE_ROOTS))
_FETCH_ERRORS = (DownloadError, UnsafeZipError, RootError, OcrVqaError, SourceError, HubError, OSError)


@dataclass
class Fetched:
    """What putting one root in place did: its files and where they came from."""

    files: int
    bytes: int
    sources: list[dict] = field(default_factory=list)  # per archive / crawl: where from, size, sha256, ...
    lost: dict[str, str] = field(default_factory=dict)  # crawled images that could not be saved, and why


@dataclass(frozen=True)
class Job:
    """Everything one run needs to fetch roots (its resources and config, gathered once)."""

    context: dg.AssetExecutionContext
    config: ImageRootsConfig
    source: ImageRootsSource
    llava: LlavaSource
    hub: HubClient
    crawler: ImageCrawler
    policy: DataPolicy
    layout: LlavaLayout

    @property
    def limits(self) -> ZipLimits:
        return ZipLimits(max_entries=self.config.max_archive_entries, max_total_bytes=self.config.max_archive_bytes)


# --- referenced images ---------------------------------------------------------------------------------------


def referencing_files(data_root: DataRoot) -> dict[str, Path]:
    """The published files whose image references coverage counts: ``{file name: local path}`` of those
    that exist (mix665k; ShareGPT4V's SFT and PT files)."""
    from vila_assets.assets.sharegpt4v.layout import ShareGPT4VLayout  # the family that reuses ours: import late

    sharegpt4v = ShareGPT4VLayout(data_root)
    out = {}
    for path in (LlavaLayout(data_root).mix665k_json, sharegpt4v.sft_json, sharegpt4v.pretrain_filtered):
        local = data_root.fetch(path)
        if local.is_file():
            out[data_root.relpath(path)] = local
    return out


# --- fetching ---------------------------------------------------------------------------------------------


def _download(job: Job, spec: ArchiveSpec, root: str):
    job.context.log.info("%s: downloading %s", root, spec.url)
    return download(spec.url, job.layout.archive_cache(spec.url), expected_size=spec.size,
                    expected_sha256=spec.sha256, fetch_url=job.source.fetch_url(spec.url),
                    retries=job.source.retries, timeout=job.source.timeout_s)


def _drop_archive(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".download.json")):
        p.unlink(missing_ok=True)


def fetch_archive_root(job: Job, root: str, dest: Path) -> Fetched:
    specs = job.source.archives(root)
    if not specs:
        raise RootError(f"{root}: no archive configured; list its archives in image_roots_source.{field_name(root)}")
    got = [_download(job, spec, root) for spec in specs]
    files, size = install_root(dest, [(d.path, spec) for d, spec in zip(got, specs)], job.limits)
    if not job.config.keep_archives:
        for d in got:
            _drop_archive(d.path)
    sources = [{"url": d.url, "fetched_from": d.fetched_from, "bytes": d.size, "sha256": d.sha256,
                "resumed_from": d.resumed_from, "reconnects": d.reconnects, "reused": d.reused} for d in got]
    return Fetched(files, size, sources)


def fetch_hub_root(job: Job, dest: Path) -> Fetched:
    """LLaVA-Pretrain's images.zip, from wherever ``llava_source.pretrain_location`` says."""
    tree = job.llava.tree("pretrain", job.hub, job.layout.data_root)
    archive = tree.fetch(PRETRAIN_IMAGES_ZIP)
    files, size = install_root(dest, [(archive, ArchiveSpec(tree.describe(PRETRAIN_IMAGES_ZIP)))], job.limits)
    return Fetched(files, size, [{"source": tree.describe(PRETRAIN_IMAGES_ZIP), "revision_sha": tree.revision or ""}])


def _ocr_vqa_dataset(job: Job) -> Path:
    location = job.source.ocr_vqa_dataset
    if not location:
        raise RootError(f"{CRAWLED_ROOT}: no OCR-VQA dataset.json configured; download it from "
                        f"{OCR_VQA_DRIVE_FOLDER} and set image_roots_source.ocr_vqa_dataset to its path or URL")
    if job.source.is_local(location):
        path = job.source.local_path(location)
        if not path.is_file():
            raise RootError(f"{path}: OCR-VQA dataset.json not found")
        return path
    return _download(job, ArchiveSpec(location), CRAWLED_ROOT).path


def _covers_wanted(job: Job, covers: dict[str, str], referenced: set[str] | None) -> dict[str, str]:
    """Every book under ``vila`` (as ``loadDataset.py``); under ``curated``, the referenced ones (all when
    no referencing file is published yet)."""
    if job.policy.is_vila or referenced is None:
        return covers
    wanted = {book_id(name) for name in referenced}
    return {book: url for book, url in covers.items() if book in wanted}


def fetch_covers(job: Job, dest: Path, referenced: set[str] | None) -> Fetched:
    """OCR-VQA's covers crawled (resumable: the crawl keeps a checkpoint) and saved as ``<id>.jpg``."""
    dataset = _ocr_vqa_dataset(job)
    covers = _covers_wanted(job, read_covers(dataset), referenced)
    work = job.layout.cover_crawl
    work.mkdir(parents=True, exist_ok=True)
    write_crawl_input(work / "input.jsonl", ((b, job.source.fetch_url(u)) for b, u in covers.items()))
    config = cover_config(job.crawler.crawl_config(), job.source.ocr_vqa_image_size, job.source.ocr_vqa_quality)
    summary = crawl(work / "input.jsonl", work, config, progress=ProgressLog(job.context.log.info, every_s=10.0))
    staging = staging_dir(dest)
    try:
        saved = save_covers(work / "samples.parquet", staging / "root")
        files, size = count_files(staging / "root")
        replace_dir(staging / "root", dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    source = {"dataset": str(job.source.ocr_vqa_dataset), "books": len(covers), "crawled_ok": saved.saved,
              "statuses": dict(saved.statuses), "bytes_downloaded": summary.bytes_downloaded}
    return Fetched(files, size, [source], saved.failed)


def fetch_root(job: Job, root: str, referenced: set[str] | None) -> Fetched:
    dest = job.layout.image_root(root)
    try:
        if root == HUB_ROOT:
            return fetch_hub_root(job, dest)
        if root == CRAWLED_ROOT:
            return fetch_covers(job, dest, referenced)
        return fetch_archive_root(job, root, dest)
    except _FETCH_ERRORS as exc:
        raise dg.Failure(description=f"{root}: {exc}", metadata={"root": root, "error": str(exc)}) from exc


# --- the asset ----------------------------------------------------------------------------------------------


def _root_metadata(root: str, fetched: Fetched, cov, job: Job) -> dict:
    listed = job.config.missing_listed
    md = {
        "images": fetched.files,
        "bytes": fetched.bytes,
        "referenced": cov.referenced,
        "present": cov.present,
        "missing": cov.referenced - cov.present,
        "coverage": round(cov.share, 6),
        "missing_names": dg.MetadataValue.json(list(cov.missing[:listed])),
        "path": path_value(job.layout.data_root, job.layout.image_root(root)),
        "report": path_value(job.layout.data_root, job.layout.root_report(root)),
    }
    if fetched.lost:
        md["not_fetched"] = len(fetched.lost)
    keys = sorted({k for s in fetched.sources for k in s})
    md["sources"] = md_table(keys, [[str(s.get(k, "")) for k in keys] for s in fetched.sources])
    return md


def _write_report(job: Job, root: str, fetched: Fetched, cov, files_read: list[str]) -> Path:
    report = {"root": root, "images": fetched.files, "bytes": fetched.bytes, "sources": fetched.sources,
              "referencing_files": files_read, "referenced": cov.referenced, "present": cov.present,
              "coverage": cov.share, "missing": list(cov.missing), "not_fetched": fetched.lost,
              "policy": job.policy.policy.value}
    return write_json(job.layout.root_report(root), report)


def _references(data_root: DataRoot) -> tuple[dict[str, set[str]] | None, list[str]]:
    files = referencing_files(data_root)
    if not files:
        return None, []
    try:
        return references_by_root(files.values()), sorted(files)
    except JsonArrayError as exc:
        raise dg.Failure(description=f"unreadable referencing file: {exc}") from exc


@dg.asset(
    partitions_def=image_root_partitions,
    backfill_policy=ranged(len(IMAGE_ROOTS)),
    group_name=FAMILY,
    kinds={"python"},
    deps=[MIX665K_ASSET, SHAREGPT4V_ASSET],
    check_specs=[c.spec(ASSET) for c in IMAGE_ROOT_CHECKS],
    description="The image folders the SFT data needs (coco/train2017, gqa/images, ...), one partition per root, "
    "under playground/data: verified resumable downloads, safe atomic extraction, OCR-VQA covers crawled; "
    "coverage of the images mix665k and ShareGPT4V reference.",
)
def sft_image_roots(
    context: dg.AssetExecutionContext, config: ImageRootsConfig, image_roots_source: ImageRootsSource,
    llava_source: LlavaSource, hub: HubClient, crawler: ImageCrawler, data_policy: DataPolicy, data_root: DataRoot,
) -> dg.MaterializeResult:
    job = Job(context, config, image_roots_source, llava_source, hub, crawler, data_policy, LlavaLayout(data_root))
    refs, files_read = _references(data_root)
    run = ShardedRun(context, IMAGE_ROOT_CHECKS)
    for root in run:
        names = refs[root] if refs is not None else set()
        fetched = fetch_root(job, root, names if refs is not None else None)
        data_root.publish_dir(job.layout.image_root(root))
        cov = coverage(root, job.layout.image_root(root), names)
        data_root.publish(_write_report(job, root, fetched, cov, files_read))
        least = config.checks.min_coverage_crawled if root == CRAWLED_ROOT else config.checks.min_coverage
        if refs is None:  # nothing to measure against is not full coverage
            run.findings.fail(COVERAGE.name, root, f"no referencing file is published: materialize "
                                                   f"{MIX665K_ASSET} and {SHAREGPT4V_ASSET} first")
        else:
            run.findings.bound(COVERAGE.name, root, cov.share, least, what="coverage")
        run.record(root, _root_metadata(root, fetched, cov, job),
                   images=fetched.files, referenced=cov.referenced, present=cov.present)
    return run.result({"policy": data_policy.policy.value,
                       "referencing_files": ", ".join(files_read) or "(none published yet: coverage not measured)",
                       "coverage_in_run": run.ratio("present", "referenced")})
