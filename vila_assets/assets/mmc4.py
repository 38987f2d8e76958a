"""MMC4-core (VILA pre-training, interleaved image-text): shard partitions -> annotations -> images ->
VILA-ready pickles at ``playground/data/mmc4-core/pkl-core`` (registry entry ``mmc4core``).

VILA used mmc4-core (non-fewer-faces), withdrawn by AI2 in Feb 2025; the default source is the public
``jmhessel/mmc4-core-ff`` (see ``vila_assets.core.mmc4`` for sources, naming and validation, and
``vila_assets.core.mmc4_merge`` for filter policies, dedup and the shard inspection).

Partitions: one per source shard, dynamic (``mmc4_shards``), keyed by the zero-padded shard index
(``"00042"``); the ``mmc4_shard_sensor`` lists the source and registers new keys. Every asset carries
``BackfillPolicy.multi_run(50)`` and loops over ``context.partition_keys``, so a backfill over the
23,085 real shards is ~462 runs.

Checks are emitted from inside the assets (``check_specs``), one result per run covering every shard of
the run's range (Dagster checks are per step, not per partition): a blocking failure names the failing
shards and holds back the downstream step for that whole range; per-shard values are in each partition's
materialization metadata.

Files per shard ``<key>``::

    staging/mmc4/<key>/annotations.parquet   every line: valid/invalid + reason + the doc verbatim
    staging/mmc4/<key>/source.json           which file, stem and revision it came from
    staging/mmc4/<key>/crawl_input.parquet   one row per image (key "<line>-<image index>")
    staging/mmc4/<key>/samples.parquet       the crawler's output (+ crawl_fingerprint.json)
    manifests/mmc4/images/<key>.parquet      per-image crawl status (no bytes)
    manifests/mmc4/docs/<key>.parquet        per-doc fate: kept / dropped / invalid, with reasons
    playground/data/mmc4-core/pkl-core/<stem>.pkl + <stem>.count   (stem: docs_no_face_shard_N_v3)
"""


import hashlib
import json
import os
from collections import Counter
from typing import Literal

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vila_assets.assets._metadata import check_selected, counts_md
from vila_assets.core import vila_format as vf
from vila_assets.core.mmc4 import (
    CRAWL_INPUT_SCHEMA,
    DEFAULT_LOCATION,
    Listing,
    SourceSpec,
    crawl_rows,
    fetch_shard,
    list_source,
    markdown_counts,
    parse_shard,
    read_annotations,
    split_batch_samples,
    write_annotations,
    write_batch_crawl_input,
    write_parquet,
)
from vila_assets.core.mmc4_merge import (
    DOCS_MANIFEST_SCHEMA,
    inspect_shard,
    load_samples,
    merge_shard,
    samples_manifest,
)
from vila_assets.demo_plan import DemoStep
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot

FAMILY = "mmc4"
GROUP = "mmc4"
MAX_PARTITIONS_PER_RUN = 50

mmc4_shards = dg.DynamicPartitionsDefinition(name="mmc4_shards")
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)


class Mmc4Source(dg.ConfigurableResource):
    """Where MMC4 shards come from. Unset fields fall back to ``$VILA_MMC4_SOURCE`` /
    ``$VILA_MMC4_REVISION`` (read when used), then to ``hf:jmhessel/mmc4-core-ff`` @ ``main``.
    ``location``: ``hf:<repo>``, a local directory, or an http(s) URL template with ``{index}``."""

    location: str | None = None
    revision: str | None = None

    def spec(self) -> SourceSpec:
        return SourceSpec(
            location=self.location or os.environ.get("VILA_MMC4_SOURCE") or DEFAULT_LOCATION,
            revision=self.revision or os.environ.get("VILA_MMC4_REVISION") or "main",
        )

    def listing(self, hub: HubClient) -> Listing:
        return list_source(self.spec(), hub.location)


class AnnotationsConfig(dg.Config):
    strict: bool = False  # raise on the first invalid doc (file:line) instead of counting it


class ImagesConfig(dg.Config):
    min_image_yield: float = 0.4  # ok images / images of valid docs; the live web loses ~40-50 % of MMC4 links
    recrawl: bool = False  # crawl again even if samples.parquet was made from the same input and config


class CoreShardConfig(dg.Config):
    filter_policy: Literal["all_or_nothing", "partial"] = "all_or_nothing"
    min_doc_yield: float = 0.15  # docs written / docs read (all_or_nothing on today's web: ~0.2-0.3)
    near_duplicate_distance: int = 3  # pHash hamming distance counted as a near duplicate
    max_near_duplicate_rate: float = 0.1


def _staging(data_root: DataRoot, key: str, name: str):
    return data_root.staging(FAMILY, key, name)


def _pkl_dir(data_root: DataRoot):
    return vf.registry_path("mmc4core", data_root.path())


def _bound_check(name: str, values: dict[str, float], bound: float, what: str, *, at_least: bool = True) -> dg.AssetCheckResult:
    """One result for the run: passes when every shard's value is >= ``bound`` (``at_least``) or <= it;
    the metadata and description name the failing shards. No shard at all is a failure."""
    failing = {k: round(v, 4) for k, v in values.items() if (v < bound if at_least else v > bound)}
    worst = (min if at_least else max)(values, key=values.get) if values else None
    op = ">=" if at_least else "<="
    return dg.AssetCheckResult(
        check_name=name,
        passed=bool(values) and not failing,
        metadata={
            "bound": bound,
            "shards": len(values),
            "worst_value": round(values[worst], 4) if worst else 0.0,
            "worst_shard": worst or "",
            "failing_shards": dg.MetadataValue.json(dict(list(failing.items())[:50])),
        },
        description=(f"{len(failing)} of {len(values)} shard(s) fail {what} {op} {bound}: "
                     + ", ".join(f"{k}={v}" for k, v in list(failing.items())[:10])) if failing
        else (f"every shard's {what} {op} {bound}" if values else "no shard in this run"),
    )


# --- assets ---------------------------------------------------------------------------------------------


@dg.asset(
    partitions_def=mmc4_shards,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"python", "parquet"},
    description="MMC4-core shard docs, validated and normalised to Parquet (invalid lines counted with "
    "file:line and reason). Source: hf:jmhessel/mmc4-core-ff by default (VILA's original mmc4-core "
    "was withdrawn in Feb 2025), a local directory or a URL template.",
)
def mmc4_annotations(
    context: dg.AssetExecutionContext,
    config: AnnotationsConfig,
    data_root: DataRoot,
    hub: HubClient,
    mmc4_source: Mmc4Source,
) -> dg.MaterializeResult:
    spec = mmc4_source.spec()
    listing = mmc4_source.listing(hub)
    totals = Counter()
    for key in context.partition_keys:
        shard = listing.shards.get(key)
        if shard is None:
            raise dg.Failure(f"mmc4 shard {key} is not in {listing.source} (revision {listing.revision}); "
                             f"{len(listing.shards)} shards listed")
        local = fetch_shard(spec, shard, hub=hub.location, revision=listing.revision,
                            cache_dir=data_root.cache("mmc4"))
        parsed = parse_shard(local, display=shard.name, strict=config.strict)
        out = write_annotations(parsed, _staging(data_root, key, "annotations.parquet"))
        vf.write_json(_staging(data_root, key, "source.json"), {
            "source": listing.source, "revision": listing.revision, "file": shard.path, "stem": shard.stem,
        })
        n_valid, n_invalid = len(parsed.valid), len(parsed.invalid)
        totals.update(docs=len(parsed.rows), invalid=n_invalid)
        md = {
            "docs": len(parsed.rows),
            "docs_valid": n_valid,
            "docs_invalid": n_invalid,
            "images": sum(r["n_images"] for r in parsed.valid),
            "source_file": shard.path,
            "path": dg.MetadataValue.path(str(out)),
        }
        if n_invalid:
            md["invalid_reasons"] = dg.MetadataValue.md(markdown_counts("invalid reason", parsed.invalid_reasons()))
            md["invalid_examples"] = dg.MetadataValue.json([f"{r['where']}: {r['reason']}" for r in parsed.invalid[:5]])
            context.log.warning(f"shard {key}: {n_invalid} invalid doc(s), e.g. "
                                f"{parsed.invalid[0]['where']}: {parsed.invalid[0]['reason']}")
        context.add_asset_metadata(md, partition_key=key)
    return dg.MaterializeResult(metadata={
        "source": listing.source,
        "revision": listing.revision or "",
        "shards_in_run": len(context.partition_keys),
        "docs_in_run": totals["docs"],
        "invalid_in_run": totals["invalid"],
    })


def _crawl_fingerprint(input_path, crawler: ImageCrawler) -> str:
    """Same crawl input + same output-affecting crawler settings -> the existing samples.parquet stands."""
    h = hashlib.sha256(input_path.read_bytes())
    h.update(json.dumps(crawler.crawl_config().output_fields(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def _crawl_shards(context, data_root: DataRoot, crawler: ImageCrawler, rows_by_shard: dict[str, list[dict]]) -> None:
    """One crawl for all shards of the run, cut back into ``staging/mmc4/<key>/samples.parquet``."""
    keys = list(rows_by_shard)
    crawler.crawl_batch(
        data_root.staging(FAMILY, "_crawl", f"{keys[0]}-{keys[-1]}-{len(keys)}"),
        lambda path: write_batch_crawl_input(rows_by_shard, path),
        lambda samples: split_batch_samples(samples, rows_by_shard, lambda key: _staging(data_root, key, "samples.parquet")),
        progress_log=context.log,
    )


@dg.asset(
    partitions_def=mmc4_shards,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"python", "parquet"},
    deps=[mmc4_annotations],
    check_specs=[
        dg.AssetCheckSpec("image_yield_above_threshold", asset="mmc4_images", blocking=True,
                          description="ok images / images of valid docs >= min_image_yield, for every shard of the run"),
    ],
    description="Every image URL of every valid MMC4 doc, crawled through the `crawler` resource "
    "(keys '<line>-<image index>', URLs verbatim); per-image status manifest in manifests/mmc4/images.",
)
def mmc4_images(
    context: dg.AssetExecutionContext,
    config: ImagesConfig,
    data_root: DataRoot,
    crawler: ImageCrawler,
) -> dg.MaterializeResult:
    rows_by_shard: dict[str, list[dict]] = {}
    fingerprints: dict[str, str] = {}
    reused: set[str] = set()
    for key in context.partition_keys:
        rows = crawl_rows(read_annotations(_staging(data_root, key, "annotations.parquet")))
        crawl_input = write_parquet(_staging(data_root, key, "crawl_input.parquet"), rows, CRAWL_INPUT_SCHEMA)
        fingerprints[key] = _crawl_fingerprint(crawl_input, crawler)
        fp_path = _staging(data_root, key, "crawl_fingerprint.json")
        if (not config.recrawl and _staging(data_root, key, "samples.parquet").exists() and fp_path.exists()
                and json.loads(fp_path.read_text()).get("fingerprint") == fingerprints[key]):
            reused.add(key)
        else:
            fp_path.unlink(missing_ok=True)
            rows_by_shard[key] = rows
    if rows_by_shard:
        _crawl_shards(context, data_root, crawler, rows_by_shard)
        for key in rows_by_shard:
            vf.write_json(_staging(data_root, key, "crawl_fingerprint.json"), {"fingerprint": fingerprints[key]})

    yields: dict[str, float] = {}
    totals = Counter()
    for key in context.partition_keys:
        samples_path = _staging(data_root, key, "samples.parquet")
        manifest = samples_manifest(samples_path, _staging(data_root, key, "crawl_input.parquet"))
        manifest_path = data_root.manifests(FAMILY, "images", f"{key}.parquet")
        write_parquet(manifest_path, manifest.to_pylist(), manifest.schema)
        counts = Counter(manifest.column("status").to_pylist())
        images = pq.read_table(samples_path, columns=["image"]).column("image")
        total = manifest.num_rows
        yields[key] = counts["ok"] / total if total else 0.0
        totals.update(images=total, ok=counts["ok"])
        context.add_asset_metadata({
            "images": total,
            "image_yield": round(yields[key], 4),
            "statuses": dg.MetadataValue.md(counts_md("image fate", dict(counts))),
            "jpeg_bytes": pc.sum(pc.binary_length(images)).as_py() or 0,
            "reused_crawl": key in reused,
            "manifest": dg.MetadataValue.path(str(manifest_path)),
        }, partition_key=key)
    checks = []
    if check_selected(context, "image_yield_above_threshold"):
        checks.append(_bound_check("image_yield_above_threshold", yields, config.min_image_yield, "image yield"))
    return dg.MaterializeResult(
        metadata={"shards_in_run": len(yields), "images_in_run": totals["images"],
                  "image_yield_in_run": round(totals["ok"] / totals["images"], 4) if totals["images"] else 0.0},
        check_results=checks,
    )


@dg.asset(
    partitions_def=mmc4_shards,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"python", "pickle"},
    deps=[mmc4_annotations, mmc4_images],
    check_specs=[
        dg.AssetCheckSpec("doc_yield_above_threshold", asset="mmc4_core_shard", blocking=True,
                          description="docs written / docs read >= min_doc_yield, for every shard of the run"),
        dg.AssetCheckSpec("no_exact_duplicate_images", asset="mmc4_core_shard", blocking=True,
                          description="no two images of a shard have the same JPEG bytes (sha256)"),
        dg.AssetCheckSpec("near_duplicate_rate_bounded", asset="mmc4_core_shard", blocking=False,
                          description="share of images with a pHash neighbour (hamming <= k) <= max_near_duplicate_rate"),
        dg.AssetCheckSpec("vila_contract", asset="mmc4_core_shard", blocking=True,
                          description="LazyMMC4Dataset can read the shard: .pkl/.count paired and equal, only "
                          "pairs in pkl-core, text_list present, image_base64 decodes as JPEG -> RGB, "
                          "matched_text_index in range, similarity_matrix rows >= images"),
    ],
    description="VILA-ready MMC4-core shard: pkl-core/<stem>.pkl (original docs in line order, "
    "image_info[i].image_base64 added) + <stem>.count; filter policy all_or_nothing (VILA) or partial; "
    "exact duplicates inside a shard removed. Per-doc fates in manifests/mmc4/docs.",
)
def mmc4_core_shard(
    context: dg.AssetExecutionContext,
    config: CoreShardConfig,
    data_root: DataRoot,
) -> dg.MaterializeResult:
    pkl_dir = _pkl_dir(data_root)
    doc_yields: dict[str, float] = {}
    near_rates: dict[str, float] = {}
    exact: dict[str, list] = {}
    problems: dict[str, list[str]] = {}
    totals = Counter()
    for key in context.partition_keys:
        source = json.loads(_staging(data_root, key, "source.json").read_text())
        annotations = read_annotations(_staging(data_root, key, "annotations.parquet"))
        result = merge_shard(annotations, load_samples(_staging(data_root, key, "samples.parquet")), config.filter_policy)
        pkl = vf.write_pickle_shard(pkl_dir, source["stem"], result.records)
        if not data_root.is_local:  # the heavy work stays local; finished pairs go to the remote root
            for p in (pkl, pkl.with_suffix(".count")):
                data_root.publish(p)
        manifest_path = data_root.manifests(FAMILY, "docs", f"{key}.parquet")
        write_parquet(manifest_path, result.doc_rows, DOCS_MANIFEST_SCHEMA)
        seen = inspect_shard(pkl_dir, source["stem"], max_distance=config.near_duplicate_distance)
        doc_yields[key] = result.doc_yield
        near_rates[key] = seen.near_duplicate_rate
        exact[key] = seen.exact_duplicates
        problems[key] = seen.problems
        totals.update(docs_in=result.docs_in, docs_out=result.docs_kept, images=result.images_kept,
                      bytes=os.path.getsize(pkl))
        context.add_asset_metadata({
            "docs_in": result.docs_in,
            "docs_invalid": result.docs_invalid,
            "docs_dropped": result.docs_dropped,
            "docs_out": result.docs_kept,
            "doc_yield": round(result.doc_yield, 4),
            "images_out": result.images_kept,
            "image_yield": round(result.image_yield, 4),
            "near_duplicate_rate": round(seen.near_duplicate_rate, 4),
            "pkl_bytes": os.path.getsize(pkl),
            "image_fates": dg.MetadataValue.md(counts_md("image fate", dict(result.fates))),
            "pkl": dg.MetadataValue.path(str(pkl)),
            "docs_manifest": dg.MetadataValue.path(str(manifest_path)),
        }, partition_key=key)
    checks = []
    if check_selected(context, "doc_yield_above_threshold"):
        checks.append(_bound_check("doc_yield_above_threshold", doc_yields, config.min_doc_yield, "doc yield"))
    if check_selected(context, "no_exact_duplicate_images"):
        dups = {k: v for k, v in exact.items() if v}
        checks.append(dg.AssetCheckResult(
            check_name="no_exact_duplicate_images", passed=not dups,
            metadata={"shards_with_duplicates": len(dups),
                      "examples": dg.MetadataValue.json({k: [list(p) for p in v[:3]] for k, v in list(dups.items())[:10]})},
        ))
    if check_selected(context, "near_duplicate_rate_bounded"):
        checks.append(_bound_check("near_duplicate_rate_bounded", near_rates, config.max_near_duplicate_rate,
                                   "near-duplicate rate", at_least=False))
    if check_selected(context, "vila_contract"):
        bad = {k: v for k, v in problems.items() if v}
        checks.append(dg.AssetCheckResult(
            check_name="vila_contract", passed=not bad,
            metadata={"shards_checked": len(problems), "shards_with_problems": len(bad),
                      "problems": dg.MetadataValue.json({k: v[:5] for k, v in list(bad.items())[:10]})},
        ))
    return dg.MaterializeResult(
        metadata={"shards_in_run": len(doc_yields), "docs_in_run": totals["docs_in"], "docs_out_in_run": totals["docs_out"],
                  "images_out_in_run": totals["images"], "pkl_bytes_in_run": totals["bytes"],
                  "filter_policy": config.filter_policy},
        check_results=checks,
    )


# --- partition discovery ----------------------------------------------------------------------------------


def new_shard_keys(listing: Listing, existing: list[str]) -> list[str]:
    """Keys of the listing not registered yet, in shard order (what the sensor adds)."""
    have = set(existing)
    return [k for k in listing.shards if k not in have]


@dg.sensor(
    name="mmc4_shard_sensor",
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists the MMC4 source and registers every new shard as an `mmc4_shards` partition.",
)
def mmc4_shard_sensor(context: dg.SensorEvaluationContext, hub: HubClient, mmc4_source: Mmc4Source):
    listing = mmc4_source.listing(hub)
    new = new_shard_keys(listing, context.instance.get_dynamic_partitions(mmc4_shards.name))
    if not new:
        return dg.SkipReason(f"{len(listing.shards)} shards in {listing.source}, none new")
    context.log.info(f"registering {len(new)} new mmc4 shard(s); source gaps: {listing.missing[:20]}")
    return dg.SensorResult(dynamic_partitions_requests=[mmc4_shards.build_add_request(new)])


ASSETS = [mmc4_annotations, mmc4_images, mmc4_core_shard]

defs = dg.Definitions(
    assets=ASSETS,
    sensors=[mmc4_shard_sensor],
    resources={"mmc4_source": Mmc4Source()},
)


def demo_steps(resources: dict, scale: str) -> list[DemoStep]:
    """Discover the sample shards, register them, and run all three assets as one ranged run."""
    source = resources.get("mmc4_source") or Mmc4Source()
    keys = tuple(source.listing(resources["hub"]).shards)
    if not keys:
        return []
    return [
        DemoStep(
            name="mmc4: shards -> VILA pickles",
            assets=tuple(a.key.to_user_string() for a in ASSETS),
            partitions=keys,
            dynamic_partitions={mmc4_shards.name: keys},
            order=20,
        )
    ]
