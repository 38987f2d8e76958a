"""The three MMC4 shard assets: ``mmc4_annotations`` -> ``mmc4_images`` -> ``mmc4_core_shard``.

Each is partitioned by ``mmc4_shards`` (one key per source shard) with ``MMC4_BACKFILL``, so a run covers a
range of shards and its body loops over them through ``ShardedRun``: per-shard metadata on each partition,
totals on the run, and one check result per declared check naming the failing shards (``checks.py``).
The logic is in ``vila_assets.core.mmc4`` (sources, validation, crawl input) and ``core.mmc4_merge``
(filter policies, dedup, reading a shard back); every file name is in ``layout.py``.
"""


import json
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vila_assets.assets._metadata import counts_value, path_value
from vila_assets.assets._sharded import ShardedRun
from vila_assets.assets.mmc4.checks import (
    CORE_SHARD_CHECKS,
    DOC_YIELD,
    IMAGE_YIELD,
    IMAGES_CHECKS,
    NEAR_DUPLICATE_RATE,
    NO_EXACT_DUPLICATES,
    USABLE_AT_WORLD_SIZE,
    VILA_CONTRACT,
)
from vila_assets.assets.mmc4.config import AnnotationsConfig, CoreShardChecks, CoreShardConfig, ImagesConfig
from vila_assets.assets.mmc4.layout import Mmc4Layout
from vila_assets.assets.mmc4.partitions import MMC4_BACKFILL, mmc4_shards
from vila_assets.assets.mmc4.sources import Mmc4Source
from vila_assets.core import vila_format as vf
from vila_assets.core.mmc4 import (
    CRAWL_INPUT_SCHEMA,
    Listing,
    ParsedShard,
    ShardFile,
    crawl_fingerprint,
    crawl_rows,
    fetch_shard,
    parse_shard,
    read_annotations,
    split_batch_samples,
    write_annotations,
    write_batch_crawl_input,
    write_parquet,
)
from vila_assets.core.mmc4_merge import (
    DOCS_MANIFEST_SCHEMA,
    MergeResult,
    MergeRules,
    ShardInspection,
    inspect_shard,
    load_samples,
    merge_shard,
    published_counts,
    rules_for,
    samples_manifest,
)
from vila_assets.core.train_layout import Usable, usable_records
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.resources.hub import HubClient
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import DataRoot

GROUP = "mmc4"



# --- mmc4_annotations ------------------------------------------------------------------------------------


def _listed(listing: Listing, key: str) -> ShardFile:
    shard = listing.shards.get(key)
    if shard is None:
        raise dg.Failure(f"mmc4 shard {key} is not in {listing.source} (revision {listing.revision}); "
                         f"{len(listing.shards)} shards listed")
    return shard


def _annotate_shard(layout: Mmc4Layout, key: str, source: Mmc4Source, listing: Listing, hub: HubClient,
                    strict: bool) -> tuple[ShardFile, ParsedShard]:
    """Fetch, validate and normalise one shard; publish its annotations and where they came from."""
    shard = _listed(listing, key)
    local = fetch_shard(source.spec(), shard, hub=hub.location, revision=listing.revision,
                        cache_dir=layout.download_cache())
    parsed = parse_shard(local, display=shard.name, strict=strict)
    write_annotations(parsed, layout.annotations(key))
    vf.write_json(layout.source(key), {
        "source": listing.source, "revision": listing.revision, "file": shard.path, "stem": shard.stem,
    })
    layout.data_root.publish(layout.annotations(key), layout.source(key))
    return shard, parsed


def _annotations_metadata(layout: Mmc4Layout, key: str, shard: ShardFile, parsed: ParsedShard) -> dict:
    md = {
        "docs": len(parsed.rows),
        "docs_valid": len(parsed.valid),
        "docs_invalid": len(parsed.invalid),
        "images": sum(r["n_images"] for r in parsed.valid),
        "source_file": shard.path,
        "path": path_value(layout.data_root, layout.annotations(key)),
    }
    if parsed.invalid:
        md["invalid_reasons"] = counts_value("invalid reason", parsed.invalid_reasons(), limit=10)
        md["invalid_examples"] = dg.MetadataValue.json([f"{r['where']}: {r['reason']}" for r in parsed.invalid[:5]])
    return md


@dg.asset(
    partitions_def=mmc4_shards,
    backfill_policy=MMC4_BACKFILL,
    group_name=GROUP,
    kinds={"python", "parquet"},
    description="MMC4-core shard docs, validated and normalised to Parquet (invalid lines counted with "
    "file:line and reason). Source: the `mmc4_source` resource (hf:jmhessel/mmc4-core-ff by default; VILA's "
    "original mmc4-core was withdrawn in Feb 2025), a local directory, an fsspec URL or a URL template; "
    "zipped or plain .jsonl shards, 4- or 5-key records.",
)
def mmc4_annotations(
    context: dg.AssetExecutionContext,
    config: AnnotationsConfig,
    data_root: DataRoot,
    hub: HubClient,
    mmc4_source: Mmc4Source,
) -> dg.MaterializeResult:
    layout = Mmc4Layout(data_root)
    listing = mmc4_source.listing(hub)
    run = ShardedRun(context)
    for key in run:
        shard, parsed = _annotate_shard(layout, key, mmc4_source, listing, hub, config.strict)
        if parsed.invalid:
            first = parsed.invalid[0]
            run.log.warning(f"shard {key}: {len(parsed.invalid)} invalid doc(s), e.g. {first['where']}: {first['reason']}")
        run.record(key, _annotations_metadata(layout, key, shard, parsed), docs=len(parsed.rows), invalid=len(parsed.invalid))
    return run.result({"source": listing.source, "revision": listing.revision or ""})


# --- mmc4_images -----------------------------------------------------------------------------------------


def _crawl_is_current(layout: Mmc4Layout, key: str, fingerprint: str) -> bool:
    """True when the shard's published samples were crawled from this input with these settings."""
    fp_path = layout.data_root.fetch(layout.crawl_fingerprint(key))
    if not fp_path.exists() or json.loads(fp_path.read_text()).get("fingerprint") != fingerprint:
        return False
    return layout.data_root.fetch(layout.samples(key)).exists()


def _plan_crawl(run: ShardedRun, layout: Mmc4Layout, crawler: ImageCrawler,
                recrawl: bool) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Crawl rows of the shards that need a crawl (in run order), and every shard's crawl fingerprint."""
    output_fields = crawler.crawl_config().output_fields()
    to_crawl: dict[str, list[dict]] = {}
    fingerprints: dict[str, str] = {}
    for key in run:
        rows = crawl_rows(read_annotations(layout.data_root.fetch(layout.annotations(key))))
        crawl_input = write_parquet(layout.crawl_input(key), rows, CRAWL_INPUT_SCHEMA)
        fingerprints[key] = crawl_fingerprint(crawl_input, output_fields)
        if recrawl or not _crawl_is_current(layout, key, fingerprints[key]):
            # no fingerprint while the samples are being replaced: an interrupted crawl is never "current"
            layout.crawl_fingerprint(key).unlink(missing_ok=True)
            to_crawl[key] = rows
    return to_crawl, fingerprints


def _crawl_range(run: ShardedRun, layout: Mmc4Layout, crawler: ImageCrawler,
                 rows_by_shard: dict[str, list[dict]]) -> None:
    """One crawl (one crawler start-up) for every shard of the run that needs it, cut back per shard."""
    crawler.crawl_batch(
        layout.crawl_batch(run.label),
        lambda path: write_batch_crawl_input(rows_by_shard, path),
        lambda samples: split_batch_samples(samples, rows_by_shard, layout.samples),
        progress_log=run.log,
    )


def _images_manifest(layout: Mmc4Layout, key: str) -> tuple[Counter, dict]:
    """Write and publish the shard's per-image status manifest; its status counts and metadata."""
    manifest = samples_manifest(layout.samples(key), layout.crawl_input(key))
    path = write_parquet(layout.images_manifest(key), manifest.to_pylist(), manifest.schema)
    layout.data_root.publish(path)
    counts = Counter(manifest.column("status").to_pylist())
    images = pq.read_table(layout.samples(key), columns=["image"]).column("image")
    return counts, {
        "images": manifest.num_rows,
        "statuses": counts_value("image fate", dict(counts)),
        "jpeg_bytes": pc.sum(pc.binary_length(images)).as_py() or 0,
        "manifest": path_value(layout.data_root, path),
    }


@dg.asset(
    partitions_def=mmc4_shards,
    backfill_policy=MMC4_BACKFILL,
    group_name=GROUP,
    kinds={"python", "parquet"},
    deps=[mmc4_annotations],
    check_specs=[c.spec("mmc4_images") for c in IMAGES_CHECKS],
    description="Every image URL of every valid MMC4 doc, crawled through the `crawler` resource "
    "(keys '<line>-<image index>', URLs verbatim; a URL used in several slots of a doc is one download); "
    "per-image status manifest in manifests/mmc4/images. The same crawl serves both data policies.",
)
def mmc4_images(
    context: dg.AssetExecutionContext,
    config: ImagesConfig,
    data_root: DataRoot,
    crawler: ImageCrawler,
) -> dg.MaterializeResult:
    layout = Mmc4Layout(data_root)
    run = ShardedRun(context, IMAGES_CHECKS)
    to_crawl, fingerprints = _plan_crawl(run, layout, crawler, config.recrawl)
    if to_crawl:
        _crawl_range(run, layout, crawler, to_crawl)
        for key in to_crawl:
            vf.write_json(layout.crawl_fingerprint(key), {"fingerprint": fingerprints[key]})
            data_root.publish(layout.samples(key), layout.crawl_fingerprint(key))
    for key in run:
        counts, md = _images_manifest(layout, key)
        image_yield = counts["ok"] / md["images"] if md["images"] else 0.0
        run.findings.bound(IMAGE_YIELD.name, key, image_yield, config.checks.min_image_yield, what="image yield")
        run.record(key, {**md, "image_yield": round(image_yield, 4), "reused_crawl": key not in to_crawl},
                   images=md["images"], ok=counts["ok"])
    return run.result({"image_yield_in_run": run.ratio("ok", "images")})


# --- mmc4_core_shard -------------------------------------------------------------------------------------


def _unpublish(data_root: DataRoot, *paths) -> None:
    """Remove files a previous run published (a shard that now has no surviving doc gets no pair)."""
    for p in paths:
        Path(p).unlink(missing_ok=True)
    if data_root.is_local:
        return
    import fsspec

    options = getattr(data_root, "storage_options", {}) or {}
    for p in paths:
        fs, remote = fsspec.core.url_to_fs(data_root.url(p), **options)
        if fs.exists(remote):
            fs.rm_file(remote)


def _write_core_shard(layout: Mmc4Layout, key: str, rules: MergeRules) -> tuple[MergeResult, str]:
    """Merge one shard's docs with its crawl, publish the VILA pickle pair (none for a shard without a
    surviving doc, as VILA's downloader writes none) and the per-doc manifest."""
    fetch = layout.data_root.fetch
    stem = json.loads(fetch(layout.source(key)).read_text())["stem"]
    annotations = read_annotations(fetch(layout.annotations(key)))
    result = merge_shard(annotations, load_samples(fetch(layout.samples(key))), rules)
    if result.records:
        vf.write_pickle_shard(layout.pkl_dir, stem, result.records)
        layout.data_root.publish(layout.pkl(stem), layout.count(stem))
    else:
        _unpublish(layout.data_root, layout.count(stem), layout.pkl(stem))
    write_parquet(layout.docs_manifest(key), result.doc_rows, DOCS_MANIFEST_SCHEMA)
    layout.data_root.publish(layout.docs_manifest(key))
    return result, stem


def _check_core_shard(run: ShardedRun, key: str, result: MergeResult, seen: ShardInspection,
                      checks: CoreShardChecks, rules: MergeRules) -> None:
    findings = run.findings
    findings.bound(DOC_YIELD.name, key, result.doc_yield, checks.min_doc_yield, what="doc yield")
    dups = seen.exact_duplicates
    # VILA does not deduplicate: with dedup off (always under the vila policy) copies are counted, not failed
    findings.expect(NO_EXACT_DUPLICATES.name, key, not dups or not rules.dedup,
                    f"{len(dups)} duplicate image(s), e.g. {dups[0][1]} = {dups[0][0]}" if dups else "")
    findings.bound(NEAR_DUPLICATE_RATE.name, key, seen.near_duplicate_rate, checks.max_near_duplicate_rate,
                   at_least=False, what="near-duplicate rate")
    findings.expect(VILA_CONTRACT.name, key, not seen.problems,
                    f"{len(seen.problems)} problem(s): " + "; ".join(seen.problems[:3]))


def _check_train_layout(run: ShardedRun, layout: Mmc4Layout, world_size: int, checks: CoreShardChecks) -> Usable:
    """What VILA's loader uses of the whole published pkl-core (every shard, not only this run's) at the
    training world size; the loss is reported, never fixed (one pickle per source shard)."""
    data_root = layout.data_root
    counts = published_counts(data_root.url(layout.pkl_dir), getattr(data_root, "storage_options", None))
    usable = usable_records([n for _, n in counts], world_size)
    run.findings.expect(
        USABLE_AT_WORLD_SIZE.name, "pkl-core", usable.share >= checks.min_usable_share,
        f"{usable.usable} of {usable.total} records usable at world size {world_size} ({usable.share:.1%} < "
        f"{checks.min_usable_share:.0%}): {usable.shards} shards, {usable.shards_read} read")
    run.findings.add_metadata(USABLE_AT_WORLD_SIZE.name, world_size=world_size, total_records=usable.total,
                              usable_records=usable.usable, lost_records=usable.lost, shards=usable.shards,
                              shards_read=usable.shards_read, bound=checks.min_usable_share)
    return usable


def _core_metadata(layout: Mmc4Layout, key: str, stem: str, result: MergeResult, seen: ShardInspection) -> dict:
    written = result.docs_kept > 0
    return {
        "docs_in": result.docs_in,
        "docs_invalid": result.docs_invalid,
        "docs_dropped": result.docs_dropped,
        "docs_out": result.docs_kept,
        "doc_yield": round(result.doc_yield, 4),
        "images_out": result.images_kept,
        "image_yield": round(result.image_yield, 4),
        "shared_url_slots": result.shared_slots,
        "images_resized_to_vila_size": result.images_resized,
        "exact_duplicates": len(seen.exact_duplicates),
        "near_duplicate_rate": round(seen.near_duplicate_rate, 4),
        "pkl_bytes": os.path.getsize(layout.pkl(stem)) if written else 0,
        "image_fates": counts_value("image fate", dict(result.fates)),
        "pkl": path_value(layout.data_root, layout.pkl(stem)) if written else "none: no surviving doc",
        "docs_manifest": path_value(layout.data_root, layout.docs_manifest(key)),
    }


@dg.asset(
    partitions_def=mmc4_shards,
    backfill_policy=MMC4_BACKFILL,
    group_name=GROUP,
    kinds={"python", "pickle"},
    deps=[mmc4_annotations, mmc4_images],
    check_specs=[c.spec("mmc4_core_shard") for c in CORE_SHARD_CHECKS],
    description="VILA-ready MMC4-core shard: pkl-core/<stem>.pkl (original docs in line order, "
    "image_info[i].image_base64 added) + <stem>.count. The `data_policy` resource decides the rules: vila = "
    "VILA's scripts (all-or-nothing, no dedup, VILA's file-name and size rules); curated = partial docs "
    "and in-shard dedup (run config switches). Per-doc fates in manifests/mmc4/docs.",
)
def mmc4_core_shard(
    context: dg.AssetExecutionContext,
    config: CoreShardConfig,
    data_root: DataRoot,
    data_policy: DataPolicy,
) -> dg.MaterializeResult:
    layout = Mmc4Layout(data_root)
    rules = rules_for(data_policy.policy, keep_partial_docs=config.keep_partial_docs,
                      dedup_images=config.dedup_images)
    run = ShardedRun(context, CORE_SHARD_CHECKS)
    for key in run:
        result, stem = _write_core_shard(layout, key, rules)
        # read back from disk, the way VILA's loader will
        seen = inspect_shard(layout.pkl_dir, stem, max_distance=config.checks.near_duplicate_distance,
                             expect_pair=result.docs_kept > 0)
        _check_core_shard(run, key, result, seen, config.checks, rules)
        md = _core_metadata(layout, key, stem, result, seen)
        run.record(key, md, docs=result.docs_in, docs_out=result.docs_kept, images_out=result.images_kept,
                   pkl_bytes=md["pkl_bytes"], exact_duplicates=md["exact_duplicates"])
    usable = _check_train_layout(run, layout, data_policy.train_world_size, config.checks)
    return run.result({"policy": data_policy.policy.value, "rules": dg.MetadataValue.json(asdict(rules)),
                       "train_world_size": data_policy.train_world_size,
                       "records_in_pkl_core": usable.total, "usable_records_at_world_size": usable.usable})
