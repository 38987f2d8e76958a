"""The COYO assets: wiring, partitions, metadata and checks. The logic is in ``core.coyo`` (schema,
selection, crawl batches), ``core.coyo_rescore`` (re-score, manifest, per-shard pickle) and
``core.coyo_split`` (parts + contract); every path comes from :class:`CoyoLayout`.

The four shard assets are partitioned by ``coyo_shards`` and carry ``COYO_BACKFILL``: one run covers a
range of shards (``ShardedRun``), per-shard figures go on each partition, check results cover the range.
Every finished file is published through the data root; what an upstream asset wrote is fetched first.
"""


import json
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vila_assets.assets._checks import Findings
from vila_assets.assets._metadata import counts_md, histogram_chart_md, histogram_png, number, path_value
from vila_assets.assets._sharded import ShardedRun
from vila_assets.assets.coyo.checks import (
    CLIP_SCORED_CHECKS,
    DOWNLOAD_YIELD,
    DUPLICATE_RATES_BOUNDED,
    ENOUGH_ROWS_PASS_GATE,
    FRESH_SCORE_DISTRIBUTION,
    IDS_UNIQUE,
    IMAGES_CHECKS,
    SELECTION_CHECKS,
    SELECTION_CORRECT,
    SPLIT_CHECKS,
    TRAIN_WORLD_SIZE,
    VILA_CONTRACT,
)
from vila_assets.assets.coyo.config import (
    CoyoClipChecks,
    CoyoClipConfig,
    CoyoImagesConfig,
    CoyoSelectionConfig,
    CoyoSplitConfig,
)
from vila_assets.assets.coyo.layout import CoyoLayout
from vila_assets.assets.coyo.partitions import COYO_BACKFILL, coyo_shards
from vila_assets.assets.coyo.sources import CoyoSource
from vila_assets.core import vila_format as vf
from vila_assets.core.atomic import atomic_write_bytes
from vila_assets.core.coyo import (
    SHARD_KEYS,
    CoyoSchemaError,
    SelectionConfig,
    SelectionSummary,
    ShardNotFound,
    ShardSchemaReport,
    resolve_shard_file,
    select_top,
    split_crawl_samples,
    validate_shard_schema,
    verify_selection,
    write_crawl_input,
)
from vila_assets.core.coyo_rescore import RescoreConfig, RescoreSummary, duplicate_rates, rescore_shard
from vila_assets.core.coyo_split import (
    SAMPLES_PER_INDEX,
    ShardOutput,
    SplitPlan,
    SplitSummary,
    check_split_dir,
    kept_counts,
    plan_split,
    split_shards,
)
from vila_assets.core.hub import HubError
from vila_assets.core.policy import Policy
from vila_assets.core.source_tree import SourceError, SourceTree, open_source
from vila_assets.core.train_layout import usable_records
from vila_assets.resources.clip import ClipScorer, gpu_op_tags
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.resources.hub import HubClient
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import DataRoot

GROUP = "coyo"



def _fetched(data_root: DataRoot, path: Path, upstream: str, key: str) -> Path:
    """``path`` (written by ``upstream``) in the working copy, or a failure saying what to materialize."""
    local = data_root.fetch(path)
    if not local.is_file():
        raise dg.Failure(f"{path} is missing: materialize {upstream} for shard {key} first")
    return local


def _read_json(data_root: DataRoot, path: Path, upstream: str, key: str) -> dict:
    return json.loads(_fetched(data_root, path, upstream, key).read_text())


# --- metadata shards ------------------------------------------------------------------------------------


def _open_source(coyo_source: CoyoSource, hub: HubClient, data_root: DataRoot) -> tuple[SourceTree, list[str]]:
    """The source tree (a hub source pinned to one commit) and its file list."""
    try:
        tree = coyo_source.tree(hub.location, data_root.cache("sources"))
        return tree, tree.list_files()
    except (SourceError, HubError) as exc:
        raise dg.Failure(f"COYO source {coyo_source.location}: {exc}") from exc


def _fetch_shard(tree: SourceTree, file: str, key: str) -> tuple[Path, ShardSchemaReport]:
    """Shard ``key``'s file, local and schema-checked (every error names the file)."""
    try:
        local = tree.fetch(file)
        return local, validate_shard_schema(local, name=tree.describe(file))
    except (SourceError, HubError, CoyoSchemaError) as exc:
        raise dg.Failure(f"COYO shard {key}: {exc}") from exc


def _shard_file(tree: SourceTree, files: list[str], key: str) -> str:
    try:
        return resolve_shard_file(files, key, tree.describe())
    except ShardNotFound as exc:
        raise dg.Failure(str(exc)) from exc


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=COYO_BACKFILL,
    group_name=GROUP,
    kinds={"parquet", "huggingface"},
    description="One COYO-700M parquet shard of the `coyo_source` (a hub repo at the commit its revision "
    "resolves to, a local directory or an fsspec URL), picked as VILA picks it and checked against the COYO "
    "schema (a missing column, a wrong type or an unreadable file fails, naming the file).",
)
def coyo_metadata_shard(
    context: dg.AssetExecutionContext, data_root: DataRoot, hub: HubClient, coyo_source: CoyoSource
) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    run = ShardedRun(context)
    tree, files = _open_source(coyo_source, hub, data_root)
    for key in run:
        file = _shard_file(tree, files, key)
        _, report = _fetch_shard(tree, file, key)
        source = {"location": coyo_source.location, "revision": coyo_source.revision, "sha": tree.revision,
                  "file": file, "name": tree.describe(file), "rows": report.rows}
        data_root.publish(vf.write_json(layout.source(key), source))
        md = {"rows": report.rows, "row_groups": report.row_groups, "file": file, "source": tree.describe(file)}
        if report.extra_columns:
            md["extra_columns"] = dg.MetadataValue.json(report.extra_columns)
        run.record(key, md, rows=report.rows)
    return run.result({"location": coyo_source.location, "revision": coyo_source.revision,
                       "sha": tree.revision or "none (not a hub source)"})


# --- selection ------------------------------------------------------------------------------------------


def _selection_metadata(summary: SelectionSummary, path_md: dg.MetadataValue) -> dict:
    md = {
        "policy": summary.policy,
        "rows": summary.rows,
        "passing": summary.passing,
        "pass_rate": round(summary.pass_rate, 4),
        "target": summary.target,
        "selected": summary.selected,
        "shortfall": summary.shortfall,
        "vila_assert_fails": summary.vila_assert_fails,
        "cut": summary.cut if summary.cut is not None else float("nan"),  # exact: ties are decided at it
        "ties_at_cut": summary.ties_at_cut,
        "ties_kept": summary.ties_kept,
        "repeated_id_rows": summary.repeated_id_rows,
        "repeats_dropped": summary.repeats_dropped,
        "path": path_md,
    }
    if summary.invalid:
        md["invalid_rows"] = dg.MetadataValue.md(counts_md("not ranked because", summary.invalid))
    if summary.out_of_range_ranked:
        md["out_of_range_ranked"] = summary.out_of_range_ranked
    return md


def _check_selection(findings: Findings, key: str, shard: Path, selection: Path, summary: SelectionSummary) -> None:
    problems = verify_selection(shard, selection, summary)
    findings.expect(SELECTION_CORRECT.name, key, not problems, "; ".join(problems))
    enough = not (summary.shortfall or summary.vila_assert_fails)
    findings.expect(ENOUGH_ROWS_PASS_GATE.name, key, enough,
                    f"{summary.passing}/{summary.rows} pass ({summary.pass_rate:.1%}; VILA's assert stops the shard "
                    f"at <= {summary.fraction:.0%}), {summary.shortfall} short of {summary.target}")
    findings.expect(IDS_UNIQUE.name, key, not summary.repeated_id_rows,
                    f"{summary.repeated_id_rows} row(s) repeat an id (e.g. "
                    f"{', '.join(map(str, summary.repeated_ids))}); {summary.repeats_dropped} left out")


def _source_shard(data_root: DataRoot, hub: HubClient, source: dict) -> tuple[Path, str]:
    """The shard ``coyo_metadata_shard`` recorded (a hub source at the same commit), local, and its name."""
    try:
        tree = open_source(source["location"], source["sha"] or source["revision"], hub.location,
                           cache_dir=data_root.cache("sources"))
        return tree.fetch(source["file"]), source["name"]
    except (SourceError, HubError) as exc:
        raise dg.Failure(f"COYO shard {source['name']}: {exc}") from exc


def _select(shard: Path, out: Path, cfg: SelectionConfig, name: str) -> SelectionSummary:
    try:
        return select_top(shard, out, cfg, name=name)
    except CoyoSchemaError as exc:
        raise dg.Failure(str(exc)) from exc


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=COYO_BACKFILL,
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    deps=[coyo_metadata_shard],
    check_specs=[c.spec("coyo_selection") for c in SELECTION_CHECKS],
    description="VILA's COYO selection per shard: vitb32 + vitl14 > 0.6, then the top int(0.2 n) by that sum. "
    "`data_policy` vila: VILA's float32 arithmetic, ties in file order, repeated ids kept; curated: float64, "
    "unusable scores never ranked, ties by id, one row per id. A shard VILA would stop is reported, not "
    "stopped. Streaming passes; memory bounded by bucket_rows.",
)
def coyo_selection(
    context: dg.AssetExecutionContext, config: CoyoSelectionConfig, data_root: DataRoot, hub: HubClient,
    data_policy: DataPolicy,
) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    run = ShardedRun(context, SELECTION_CHECKS)
    try:
        cfg = SelectionConfig(policy=data_policy.policy, fraction=config.fraction, min_score=config.min_score,
                              oversample=config.oversample, bucket_rows=config.bucket_rows)
    except ValueError as exc:
        raise dg.Failure(f"coyo_selection under the {data_policy.policy.value} policy: {exc}") from exc
    for key in run:
        source = _read_json(data_root, layout.source(key), "coyo_metadata_shard", key)
        shard, name = _source_shard(data_root, hub, source)
        out = layout.selection(key)
        summary = _select(shard, out, cfg, name)
        vf.write_json(layout.selection_summary(key), summary.as_dict())
        data_root.publish(out, layout.selection_summary(key))
        for warning in summary.warnings:
            run.log.warning(warning)
        _check_selection(run.findings, key, shard, out, summary)
        run.record(key, _selection_metadata(summary, path_value(data_root, out)),
                   rows=summary.rows, selected=summary.selected, shortfall=summary.shortfall,
                   repeated_id_rows=summary.repeated_id_rows)
    return run.result({"policy": data_policy.policy.value})


# --- images ---------------------------------------------------------------------------------------------


def _crawl_range(run: ShardedRun, layout: CoyoLayout, crawler: ImageCrawler) -> None:
    """One crawl for the selections of every shard of the run, cut back into one samples file per shard."""
    counts: dict[str, int] = {}
    crawler.crawl_batch(
        layout.crawl_batch(run.label),
        lambda path: counts.update(write_crawl_input({k: layout.selection(k) for k in run}, path)),
        lambda samples: split_crawl_samples(samples, counts, {k: layout.samples(k) for k in run}),
        progress_log=run.log,
    )


def _images_metadata(samples: Path) -> dict:
    """Per shard: crawl statuses, yield, and duplicate rates among the downloaded images."""
    table = pq.read_table(samples, columns=["status", "sha256", "phash"])
    status = Counter(table.column("status").to_pylist())
    n, ok = table.num_rows, status.get("ok", 0)
    ok_rows = table.filter(pc.equal(table.column("status"), "ok"))
    exact, near = duplicate_rates(ok_rows.column("sha256").to_pylist(), ok_rows.column("phash").to_pylist())
    return {
        "selected": n,
        "downloaded": ok,
        "download_yield": round(ok / n, 4) if n else 0.0,
        "statuses": dg.MetadataValue.md(counts_md("crawl status", dict(status))),
        "exact_duplicate_rate_downloaded": round(exact, 4),
        "near_duplicate_rate_downloaded": round(near, 4),
    }


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=COYO_BACKFILL,
    group_name=GROUP,
    kinds={"python", "parquet"},
    deps=[coyo_selection],
    check_specs=[c.spec("coyo_images") for c in IMAGES_CHECKS],
    description="The selected URLs of each shard crawled through the `crawler` resource (one crawl per run), "
    "cut back into one samples file per shard in selection (rank) order.",
)
def coyo_images(
    context: dg.AssetExecutionContext, config: CoyoImagesConfig, data_root: DataRoot, crawler: ImageCrawler
) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    run = ShardedRun(context, IMAGES_CHECKS)
    for key in run:
        _fetched(data_root, layout.selection(key), "coyo_selection", key)
    _crawl_range(run, layout, crawler)
    for key in run:
        samples = layout.samples(key)
        data_root.publish(samples)
        md = _images_metadata(samples)
        if md["selected"]:  # nothing selected: nothing to fetch, no yield to judge
            run.findings.bound(DOWNLOAD_YIELD.name, key, md["download_yield"], config.checks.min_download_yield,
                               what="download yield")
        else:
            run.findings.passed(DOWNLOAD_YIELD.name, key)
        run.record(key, {**md, "path": path_value(data_root, samples)},
                   selected=md["selected"], downloaded=md["downloaded"])
    return run.result({"download_yield_in_run": run.ratio("downloaded", "selected")})


# --- CLIP re-score --------------------------------------------------------------------------------------


def _rescore(layout: CoyoLayout, key: str, clip: ClipScorer | None, config: CoyoClipConfig) -> RescoreSummary:
    """Re-score shard ``key`` (``clip`` None: keep every downloaded pair, as VILA does); writes and publishes
    its manifest, pickle, summary and (when scored) histogram."""
    data_root = layout.data_root
    selected = _read_json(data_root, layout.selection_summary(key), "coyo_selection", key)
    target = selected["target"]
    summary = rescore_shard(
        _fetched(data_root, layout.selection(key), "coyo_selection", key),
        _fetched(data_root, layout.samples(key), "coyo_images", key),
        clip.score_pairs if clip else None,
        RescoreConfig(min_fresh_score=clip.min_fresh_score if clip else None,
                      target=target if selected["oversample"] > 1 else None,
                      vila_target=target, batch_rows=config.batch_rows),
        layout.samples_manifest(key),
        layout.shard_pickle(key),
    )
    vf.write_json(layout.shard_summary(key), summary.as_dict())
    data_root.publish(layout.samples_manifest(key), layout.shard_pickle(key), layout.shard_summary(key))
    if clip:
        atomic_write_bytes(layout.fresh_scores_png(key), histogram_png(summary.fresh_scores, summary.threshold))
        data_root.publish(layout.fresh_scores_png(key))
    return summary


def _check_scored(findings: Findings, key: str, s: RescoreSummary, checks: CoyoClipChecks) -> None:
    scorable = s.crawl_counts.get("ok", 0) - s.dropped.get("missing text", 0)
    if scorable and s.threshold is not None:
        findings.bound(FRESH_SCORE_DISTRIBUTION.name, key, (scorable - s.scored) / scorable,
                       checks.max_unscorable_rate, at_least=False, what="unscorable share of downloaded pairs")
    else:
        findings.passed(FRESH_SCORE_DISTRIBUTION.name, key)
    within = (s.exact_duplicate_rate <= checks.max_exact_duplicate_rate
              and s.near_duplicate_rate <= checks.max_near_duplicate_rate)
    findings.expect(DUPLICATE_RATES_BOUNDED.name, key, within,
                    f"exact {s.exact_duplicate_rate:.3f}, near {s.near_duplicate_rate:.3f}")


def _scored_metadata(s: RescoreSummary, layout: CoyoLayout, key: str) -> dict:
    root = layout.data_root
    md = {
        "selected": s.selected,
        "downloaded": s.downloaded,
        "scored": s.scored,
        "kept": s.kept,
        "kept_yield": round(s.yield_kept, 4),
        "exact_duplicate_rate": round(s.exact_duplicate_rate, 4),
        "near_duplicate_rate": round(s.near_duplicate_rate, 4),
        "drop_reasons": dg.MetadataValue.md(counts_md("dropped because", s.dropped)) if s.dropped else "none",
        "manifest": path_value(root, layout.samples_manifest(key)),
        "pickle": path_value(root, layout.shard_pickle(key)),
    }
    if s.threshold is None:
        return {**md, "rescored": False}
    return {
        **md,
        "rescored": True,
        "dropped_below_threshold": s.below_threshold,
        "threshold": s.threshold,
        "spearman_fresh_vs_metadata_sum": number(s.spearman_vs_metadata_sum),
        "spearman_fresh_vs_metadata_vitb32": number(s.spearman_vs_metadata_vitb32),
        "pass_agreement": number(s.pass_agreement),
        "fresh_score_histogram": path_value(root, layout.fresh_scores_png(key)),
    }


def _scored_run_metadata(run: ShardedRun, clip: ClipScorer | None, scores: list[float], policy: str) -> dict:
    md = {"policy": policy, "kept_yield_in_run": run.ratio("kept", "selected")}
    if clip is None:
        return {**md, "scorer": "none: the vila policy keeps every downloaded pair"}
    chart = dg.MetadataValue.md(histogram_chart_md(scores, clip.min_fresh_score))
    run.findings.add_metadata(FRESH_SCORE_DISTRIBUTION.name, histogram=chart)
    return {**md, "scorer": dg.MetadataValue.json(clip.describe()), "threshold": clip.min_fresh_score,
            "fresh_scores": chart}


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=COYO_BACKFILL,
    group_name=GROUP,
    kinds={"pytorch", "pickle"},
    deps=[coyo_images],
    pool="gpu",
    op_tags=gpu_op_tags(),
    check_specs=[c.spec("coyo_clip_scored") for c in CLIP_SCORED_CHECKS],
    description="VILA's per-shard coyo pickle of what was downloaded, with a per-sample manifest. Under "
    "`data_policy` curated, CLIP re-scores every pair (the 2021 metadata scores may describe images since "
    "replaced) and drops those below the `clip` resource's min_fresh_score, reporting agreement with the "
    "metadata scores; under vila nothing is scored (VILA never ran CLIP) and every downloaded pair is kept. "
    "Runs in the `gpu` pool; on k8s the step pod requests nvidia.com/gpu: 1.",
)
def coyo_clip_scored(
    context: dg.AssetExecutionContext, config: CoyoClipConfig, data_root: DataRoot, clip: ClipScorer,
    data_policy: DataPolicy,
) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    run = ShardedRun(context, CLIP_SCORED_CHECKS)
    scorer = None if data_policy.is_vila else clip
    run.log.info(f"scoring with {clip.describe()}, threshold {clip.min_fresh_score}" if scorer
                 else "vila policy: no CLIP re-score, every downloaded pair is kept")
    all_scores: list[float] = []
    for key in run:
        s = _rescore(layout, key, scorer, config)
        all_scores += s.fresh_scores
        _check_scored(run.findings, key, s, config.checks)
        run.record(key, _scored_metadata(s, layout, key), selected=s.selected, downloaded=s.downloaded,
                   scored=s.scored, kept=s.kept, dropped_below_threshold=s.below_threshold)
    return run.result(_scored_run_metadata(run, scorer, all_scores, data_policy.policy.value))


# --- split ----------------------------------------------------------------------------------------------


def _ranges(keys: list[str]) -> str:
    """ "00003-00007, 00010" for a sorted list of shard keys."""
    spans: list[list[int]] = []
    for i in map(int, keys):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a:05d}" if a == b else f"{a:05d}-{b:05d}" for a, b in spans)


def _scored_shards(context: dg.AssetExecutionContext, layout: CoyoLayout) -> tuple[list[ShardOutput], list[str]]:
    """(every materialized shard's outputs, fetched, in shard order; the shard keys not materialized)."""
    done = context.instance.get_materialized_partitions(coyo_clip_scored.key)
    shards = []
    for key in (k for k in SHARD_KEYS if k in done):
        out = ShardOutput(key, layout.data_root.fetch(layout.samples_manifest(key)),
                          layout.data_root.fetch(layout.samples(key)))
        if not (out.manifest.is_file() and out.samples.is_file()):
            raise dg.Failure(f"shard {key} is materialized but {out.manifest} or {out.samples} is missing; "
                             "re-materialize coyo_images and coyo_clip_scored for it")
        shards.append(out)
    if not shards:
        raise dg.Failure("no coyo_clip_scored shard is materialized yet")
    return shards, [k for k in SHARD_KEYS if k not in done]


def _check_split(layout: CoyoLayout, config: CoyoSplitConfig, plan: SplitPlan, world_size: int) -> Findings:
    """Reads the parts back from disk as LazyCoyoDataset would, and counts what it uses at the world size."""
    findings = Findings(SPLIT_CHECKS)
    out_dir = layout.split_dir()
    subject = layout.data_root.relpath(out_dir)
    report = check_split_dir(out_dir, config.samples_per_part, config.checks.decode_per_part,
                             exact=plan.policy == Policy.vila.value)
    findings.expect(VILA_CONTRACT.name, subject, not report.problems,
                    f"{len(report.problems)} problem(s): " + "; ".join(report.problems[:5]))
    findings.add_metadata(VILA_CONTRACT.name, parts=report.parts, records=report.records,
                          images_decoded=report.decoded, problems=dg.MetadataValue.json(report.problems[:20]))
    usable = usable_records(report.sizes, world_size, SAMPLES_PER_INDEX)
    findings.expect(TRAIN_WORLD_SIZE.name, subject, usable.lost == 0,
                    f"{usable.usable} of {usable.total} records usable at world size {world_size} "
                    f"({usable.lost} lost; {usable.shards_read} of {usable.shards} parts read)")
    findings.add_metadata(TRAIN_WORLD_SIZE.name, world_size=world_size, usable=usable.usable, total=usable.total,
                          lost=usable.lost, usable_share=round(usable.share, 4))
    return findings


def _split_metadata(s: SplitSummary, missing: list[str], layout: CoyoLayout, world_size: int) -> dict:
    plan = s.plan
    return {
        "policy": plan.policy,
        "train_world_size": world_size,
        "records": plan.records,
        "samples": plan.total,
        "parts": s.parts,
        "samples_per_part": plan.samples_per_part,
        "part_sizes": dg.MetadataValue.json(sorted(set(s.part_sizes))),
        "dropped": plan.dropped,
        "padded": plan.padded,
        "shards_used": len(s.shards),
        "shards_missing": len(missing),
        "missing_shards": _ranges(missing) or "none",
        "records_per_shard": dg.MetadataValue.md(counts_md("shard", s.records_per_shard)),
        "removed_stale": dg.MetadataValue.json(s.removed_stale[:20]),
        "path": path_value(layout.data_root, layout.split_dir()),
        "manifest": path_value(layout.data_root, layout.split_manifest()),
    }


def _log_split(context: dg.AssetExecutionContext, plan: SplitPlan, missing: list[str]) -> None:
    if plan.dropped:
        context.log.warning(f"vila policy: the final {plan.dropped} of {plan.records} records do not fill a part "
                            f"of {plan.samples_per_part} and are dropped, as VILA's coyo_splitter drops them")
    if plan.padded:
        context.log.info(f"curated policy: {plan.padded} of the first records repeated so every record is usable "
                         f"at world size {plan.world_size}")
    if missing:
        context.log.warning(f"{len(missing)} of {len(SHARD_KEYS)} shards not materialized, not in the split: "
                            f"{_ranges(missing)}")


@dg.asset(
    group_name=GROUP,
    kinds={"pickle"},
    deps=[coyo_clip_scored],
    check_specs=[c.spec("coyo_split") for c in SPLIT_CHECKS],
    description="VILA's coyo_splitter: every materialized shard's kept records (shard order, then rank) cut into "
    "part-%05d.pkl + .count under playground/data/coyo-700m/pkl02-split. `data_policy` vila: parts of exactly "
    "samples_per_part (12,440), the final partial part dropped and reported; curated: parts of at most that, "
    "laid out so every record is usable at `train_world_size`. Shards not materialized are listed.",
)
def coyo_split(context: dg.AssetExecutionContext, config: CoyoSplitConfig, data_root: DataRoot,
               data_policy: DataPolicy) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    shards, missing = _scored_shards(context, layout)
    world_size = data_policy.train_world_size
    plan = plan_split(data_policy.policy, sum(kept_counts(shards).values()), config.samples_per_part, world_size)
    out_dir = layout.split_dir()
    s = split_shards(shards, out_dir, plan, layout.split_manifest())
    data_root.publish_dir(out_dir)
    data_root.publish(layout.split_manifest())
    _log_split(context, plan, missing)
    findings = _check_split(layout, config, plan, world_size)
    return dg.MaterializeResult(metadata=_split_metadata(s, missing, layout, world_size),
                                check_results=findings.results())


SHARD_ASSETS = [coyo_metadata_shard, coyo_selection, coyo_images, coyo_clip_scored]
ASSETS = [*SHARD_ASSETS, coyo_split]
