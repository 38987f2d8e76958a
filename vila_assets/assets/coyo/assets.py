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
    IMAGES_CHECKS,
    SELECTION_CHECKS,
    SELECTION_CORRECT,
    SPLIT_CHECKS,
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
    select_top,
    shard_filename,
    split_crawl_samples,
    validate_shard_schema,
    verify_selection,
    write_crawl_input,
)
from vila_assets.core.coyo_rescore import RescoreConfig, RescoreSummary, duplicate_rates, rescore_shard
from vila_assets.core.coyo_split import ShardOutput, SplitSummary, check_split_dir, split_shards
from vila_assets.core.hub import HubError
from vila_assets.resources.clip import ClipScorer, gpu_op_tags
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.resources.hub import HubClient
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


def _download_shard(hub: HubClient, source: CoyoSource, sha: str, key: str) -> tuple[Path, dict]:
    """Shard ``key`` at commit ``sha``, schema-checked: (local parquet, what source.json records)."""
    file = shard_filename(key)
    try:
        local = hub.download(source.repo, file, sha)
    except HubError as exc:
        raise dg.Failure(f"COYO shard {key}: {exc}") from exc
    try:
        report = validate_shard_schema(local, name=f"{source.repo}@{sha[:12]}/{file}")
    except CoyoSchemaError as exc:
        raise dg.Failure(str(exc)) from exc
    md = {"rows": report.rows, "row_groups": report.row_groups, "file": file, "sha": sha}
    if report.extra_columns:
        md["extra_columns"] = dg.MetadataValue.json(report.extra_columns)
    return local, md


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=COYO_BACKFILL,
    group_name=GROUP,
    kinds={"parquet", "huggingface"},
    description="One COYO-700M parquet shard of the `coyo_source` repo, downloaded through the `hub` resource "
    "at the commit its revision resolves to, and checked against the COYO schema (a missing column or a wrong "
    "type fails, naming file and column).",
)
def coyo_metadata_shard(
    context: dg.AssetExecutionContext, data_root: DataRoot, hub: HubClient, coyo_source: CoyoSource
) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    run = ShardedRun(context)
    try:
        sha = hub.resolve_revision(coyo_source.repo, coyo_source.revision)
    except HubError as exc:
        raise dg.Failure(str(exc)) from exc
    for key in run:
        _, md = _download_shard(hub, coyo_source, sha, key)
        source = {"repo": coyo_source.repo, "revision": coyo_source.revision, "sha": sha, "file": md["file"],
                  "rows": md["rows"]}
        data_root.publish(vf.write_json(layout.source(key), source))
        run.record(key, md, rows=md["rows"])
    return run.result({"repo": coyo_source.repo, "revision": coyo_source.revision, "sha": sha})


# --- selection ------------------------------------------------------------------------------------------


def _selection_metadata(summary: SelectionSummary, path_md: dg.MetadataValue) -> dict:
    md = {
        "rows": summary.rows,
        "passing": summary.passing,
        "pass_rate": round(summary.pass_rate, 4),
        "target": summary.target,
        "selected": summary.selected,
        "shortfall": summary.shortfall,
        "cut": summary.cut if summary.cut is not None else float("nan"),  # exact: ties are decided at it
        "ties_at_cut": summary.ties_at_cut,
        "ties_kept": summary.ties_kept,
        "path": path_md,
    }
    if summary.invalid:
        md["invalid_rows"] = dg.MetadataValue.md(counts_md("not ranked because", summary.invalid))
    return md


def _check_selection(findings: Findings, key: str, shard: Path, selection: Path, summary: SelectionSummary) -> None:
    problems = verify_selection(shard, selection, summary)
    findings.expect(SELECTION_CORRECT.name, key, not problems, "; ".join(problems))
    findings.expect(ENOUGH_ROWS_PASS_GATE.name, key, not summary.shortfall,
                    f"{summary.passing}/{summary.rows} pass, {summary.shortfall} short of {summary.target}")


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=COYO_BACKFILL,
    group_name=GROUP,
    kinds={"polars", "parquet"},
    deps=[coyo_metadata_shard],
    check_specs=[c.spec("coyo_selection") for c in SELECTION_CHECKS],
    description="VILA's COYO selection per shard: vitb32 + vitl14 > 0.6, then the top int(0.2 n) by that sum, "
    "ties broken by id (VILA's sort was unstable). Polars streaming passes; memory bounded by bucket_rows.",
)
def coyo_selection(
    context: dg.AssetExecutionContext, config: CoyoSelectionConfig, data_root: DataRoot, hub: HubClient
) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    run = ShardedRun(context, SELECTION_CHECKS)
    cfg = SelectionConfig(config.fraction, config.min_score, config.oversample, config.bucket_rows)
    for key in run:
        source = _read_json(data_root, layout.source(key), "coyo_metadata_shard", key)
        try:  # a cache hit after coyo_metadata_shard on the same machine
            shard = hub.download(source["repo"], source["file"], source["sha"])
        except HubError as exc:
            raise dg.Failure(f"COYO shard {key}: {exc}") from exc
        out = layout.selection(key)
        summary = select_top(shard, out, cfg, name=f"{source['repo']}@{source['sha'][:12]}/{source['file']}")
        vf.write_json(layout.selection_summary(key), summary.as_dict())
        data_root.publish(out, layout.selection_summary(key))
        for warning in summary.warnings:
            run.log.warning(warning)
        _check_selection(run.findings, key, shard, out, summary)
        run.record(key, _selection_metadata(summary, path_value(data_root, out)),
                   rows=summary.rows, selected=summary.selected, shortfall=summary.shortfall)
    return run.result()


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


def _rescore(layout: CoyoLayout, key: str, clip: ClipScorer, config: CoyoClipConfig) -> RescoreSummary:
    """Re-score shard ``key``; writes and publishes its manifest, pickle, summary and histogram."""
    data_root = layout.data_root
    selected = _read_json(data_root, layout.selection_summary(key), "coyo_selection", key)
    target = selected["target"]
    summary = rescore_shard(
        _fetched(data_root, layout.selection(key), "coyo_selection", key),
        _fetched(data_root, layout.samples(key), "coyo_images", key),
        clip.score_pairs,
        RescoreConfig(min_fresh_score=clip.min_fresh_score,
                      target=target if selected["oversample"] > 1 else None,
                      vila_target=target, batch_rows=config.batch_rows),
        layout.samples_manifest(key),
        layout.shard_pickle(key),
    )
    vf.write_json(layout.shard_summary(key), summary.as_dict())
    atomic_write_bytes(layout.fresh_scores_png(key), histogram_png(summary.fresh_scores, summary.threshold))
    data_root.publish(layout.samples_manifest(key), layout.shard_pickle(key), layout.shard_summary(key),
                      layout.fresh_scores_png(key))
    return summary


def _check_scored(findings: Findings, key: str, s: RescoreSummary, checks: CoyoClipChecks) -> None:
    scorable = s.crawl_counts.get("ok", 0) - s.dropped.get("missing text", 0)
    if scorable:
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
    return {
        "selected": s.selected,
        "downloaded": s.downloaded,
        "scored": s.scored,
        "kept": s.kept,
        "kept_yield": round(s.yield_kept, 4),
        "dropped_below_threshold": s.below_threshold,
        "threshold": s.threshold,
        "spearman_fresh_vs_metadata_sum": number(s.spearman_vs_metadata_sum),
        "spearman_fresh_vs_metadata_vitb32": number(s.spearman_vs_metadata_vitb32),
        "pass_agreement": number(s.pass_agreement),
        "exact_duplicate_rate": round(s.exact_duplicate_rate, 4),
        "near_duplicate_rate": round(s.near_duplicate_rate, 4),
        "drop_reasons": dg.MetadataValue.md(counts_md("dropped because", s.dropped)) if s.dropped else "none",
        "fresh_score_histogram": path_value(root, layout.fresh_scores_png(key)),
        "manifest": path_value(root, layout.samples_manifest(key)),
        "pickle": path_value(root, layout.shard_pickle(key)),
    }


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=COYO_BACKFILL,
    group_name=GROUP,
    kinds={"pytorch", "pickle"},
    deps=[coyo_images],
    pool="gpu",
    op_tags=gpu_op_tags(),
    check_specs=[c.spec("coyo_clip_scored") for c in CLIP_SCORED_CHECKS],
    description="CLIP re-score of what was actually downloaded (the 2021 metadata scores may describe images "
    "since replaced): pairs below the `clip` resource's min_fresh_score are dropped; writes VILA's per-shard "
    "coyo pickle and a per-sample manifest with agreement between metadata and fresh scores. Runs in the "
    "`gpu` pool; on k8s the step pod requests nvidia.com/gpu: 1.",
)
def coyo_clip_scored(
    context: dg.AssetExecutionContext, config: CoyoClipConfig, data_root: DataRoot, clip: ClipScorer
) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    run = ShardedRun(context, CLIP_SCORED_CHECKS)
    scorer = clip.describe()
    run.log.info(f"scoring with {scorer}, threshold {clip.min_fresh_score}")
    all_scores: list[float] = []
    for key in run:
        s = _rescore(layout, key, clip, config)
        all_scores += s.fresh_scores
        _check_scored(run.findings, key, s, config.checks)
        run.record(key, _scored_metadata(s, layout, key), selected=s.selected, downloaded=s.downloaded,
                   scored=s.scored, kept=s.kept, dropped_below_threshold=s.below_threshold)
    chart = dg.MetadataValue.md(histogram_chart_md(all_scores, clip.min_fresh_score))
    run.findings.add_metadata(FRESH_SCORE_DISTRIBUTION.name, histogram=chart)
    return run.result({"scorer": dg.MetadataValue.json(scorer), "threshold": clip.min_fresh_score,
                       "kept_yield_in_run": run.ratio("kept", "selected"), "fresh_scores": chart})


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


def _check_contract(layout: CoyoLayout, config: CoyoSplitConfig) -> Findings:
    """Reads the parts back from disk as LazyCoyoDataset would."""
    findings = Findings(SPLIT_CHECKS)
    out_dir = layout.split_dir()
    report = check_split_dir(out_dir, config.samples_per_part, config.checks.decode_per_part)
    findings.expect(VILA_CONTRACT.name, layout.data_root.relpath(out_dir), not report.problems,
                    f"{len(report.problems)} problem(s): " + "; ".join(report.problems[:5]))
    findings.add_metadata(VILA_CONTRACT.name, parts=report.parts, records=report.records,
                          images_decoded=report.decoded, problems=dg.MetadataValue.json(report.problems[:20]))
    return findings


def _split_metadata(s: SplitSummary, missing: list[str], layout: CoyoLayout) -> dict:
    return {
        "samples": s.total,
        "parts": s.parts,
        "samples_per_part": s.samples_per_part,
        "full_parts": s.full_parts,
        "remainder": s.remainder,
        "shards_used": len(s.shards),
        "shards_missing": len(missing),
        "missing_shards": _ranges(missing) or "none",
        "records_per_shard": dg.MetadataValue.md(counts_md("shard", s.records_per_shard)),
        "removed_stale": dg.MetadataValue.json(s.removed_stale[:20]),
        "path": path_value(layout.data_root, layout.split_dir()),
        "manifest": path_value(layout.data_root, layout.split_manifest()),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"pickle"},
    deps=[coyo_clip_scored],
    check_specs=[c.spec("coyo_split") for c in SPLIT_CHECKS],
    description="VILA's coyo_splitter: every materialized shard's kept records (shard order, then rank) cut into "
    "equal-size part-%05d.pkl + .count under playground/data/coyo-700m/pkl02-split (12,440 per part); the "
    "remainder is a last short part, never dropped. Shards not materialized are listed in the metadata.",
)
def coyo_split(context: dg.AssetExecutionContext, config: CoyoSplitConfig, data_root: DataRoot) -> dg.MaterializeResult:
    layout = CoyoLayout(data_root)
    shards, missing = _scored_shards(context, layout)
    out_dir = layout.split_dir()
    s = split_shards(shards, out_dir, config.samples_per_part, layout.split_manifest())
    data_root.publish_dir(out_dir)
    data_root.publish(layout.split_manifest())
    if s.remainder:
        context.log.info(f"last part {data_root.relpath(out_dir)}/part-{s.parts - 1:05d} holds the remainder: "
                         f"{s.remainder} of {s.samples_per_part} (VILA's splitter dropped it)")
    if missing:
        context.log.warning(f"{len(missing)} of {len(SHARD_KEYS)} shards not materialized, not in the split: "
                            f"{_ranges(missing)}")
    findings = _check_contract(layout, config)
    return dg.MaterializeResult(metadata=_split_metadata(s, missing, layout), check_results=findings.results())


SHARD_ASSETS = [coyo_metadata_shard, coyo_selection, coyo_images, coyo_clip_scored]
ASSETS = [*SHARD_ASSETS, coyo_split]
