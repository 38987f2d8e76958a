"""COYO-700M top-20 % (VILA pre-training, registry entry ``coyo``): 128 shard partitions ->
metadata -> selection -> images -> CLIP re-score -> VILA's ``pkl02-split`` parts.

Partitions: the 128 parquet shards of ``kakaobrain/coyo-700m``, keys ``"00000"``..``"00127"`` (static: the
dataset is frozen). Every shard asset carries ``BackfillPolicy.multi_run(16)`` and loops over
``context.partition_keys``; checks are emitted from inside the assets, one result per run covering every
shard of the run (per-shard figures are in each partition's metadata).

The logic lives in ``vila_assets.core.coyo`` (schema, selection), ``core.coyo_rescore`` (re-score, manifest,
per-shard pickle) and ``core.coyo_split`` (parts + contract). Files per shard ``<key>``::

    staging/coyo/<key>/source.json         repo, file and the commit sha it was read at
    staging/coyo/<key>/selection.parquet   the selected rows in rank order (+ selection.json summary)
    staging/coyo/<key>/samples.parquet     the crawler's output, one row per selected row, same order
    staging/coyo/pkl/<key>.pkl             VILA's per-shard output: list of {id, url, text, clip_sim, image}
    manifests/coyo/samples/<key>.parquet   per selected row: crawl status, fresh score, kept / drop reason
    manifests/coyo/shards/<key>.json       the shard's re-score summary
    reports/coyo/fresh_scores_<key>.png    fresh-score histogram
    playground/data/coyo-700m/pkl02-split/part-%05d.pkl + .count   (split; manifests/coyo/split.parquet)
"""


import base64
import json
import os
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vila_assets.assets._metadata import check_selected, counts_md
from vila_assets.core import vila_format as vf
from vila_assets.core.atomic import atomic_write_bytes
from vila_assets.core.coyo import (
    REPO_ID,
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
from vila_assets.core.coyo_rescore import (
    RescoreConfig,
    duplicate_rates,
    histogram_markdown,
    histogram_png,
    rescore_shard,
)
from vila_assets.core.coyo_split import VILA_SAMPLES_PER_PART, ShardOutput, check_split_dir, split_shards
from vila_assets.core.hub import HubError
from vila_assets.demo_plan import DemoStep
from vila_assets.resources.clip import ClipScorer, gpu_op_tags
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot

FAMILY = "coyo"
GROUP = "coyo"
MAX_PARTITIONS_PER_RUN = 16

coyo_shards = dg.StaticPartitionsDefinition(list(SHARD_KEYS))
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)

# Fresh-score threshold for the default scorer, open_clip ViT-B-32/openai (cosine, not VILA's sum of two
# models). 0.28 is LAION-5B's English cut for the same model; COYO's own vitb32 column averages 0.291 and
# rows in the top 20 % by vitb32+vitl14 sit well above it, while a placeholder or an unrelated picture scores
# ~0.1-0.2. Other models need their own value: set VILA_COYO_MIN_CLIP_SCORE or the asset config (the sample
# world sets the tiny model's TINY_CLIP_THRESHOLD that way).
DEFAULT_MIN_CLIP_SCORE = 0.28
MIN_CLIP_SCORE_ENV = "VILA_COYO_MIN_CLIP_SCORE"


def _staging(data_root: DataRoot, key: str, name: str) -> Path:
    return data_root.staging(FAMILY, key, name)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise dg.Failure(f"{path} is missing: materialize {what} for this shard first")
    return json.loads(path.read_text())


def _per_shard_check(name: str, failing: dict[str, str], shards: int, ok_text: str, **kw) -> dg.AssetCheckResult:
    """One result for the run; the description names the failing shards."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=shards > 0 and not failing,
        metadata={"shards": shards, "failing_shards": dg.MetadataValue.json(dict(list(failing.items())[:50]))},
        description="; ".join(f"{k}: {v}" for k, v in list(failing.items())[:10]) if failing
        else (ok_text if shards else "no shard in this run"),
        **kw,
    )


# --- configs --------------------------------------------------------------------------------------------


class CoyoMetadataConfig(dg.Config):
    revision: str = "main"  # branch, tag or commit of kakaobrain/coyo-700m; resolved to a sha per run


class CoyoSelectionConfig(dg.Config):
    fraction: float = 0.2  # VILA: int(0.2 * n) rows per shard
    min_score: float = 0.6  # VILA: vitb32 + vitl14 > 0.6
    oversample: float = 1.0  # > 1: preselect more; the re-score keeps the best int(fraction * n) by fresh score
    bucket_rows: int = 50_000  # full rows held at once while writing the selection in rank order


class CoyoImagesConfig(dg.Config):
    min_download_yield: float = 0.5  # downloaded / selected; COYO's 2021 URLs lose a good share to link rot


class CoyoClipConfig(dg.Config):
    min_clip_score: float | None = None  # None: $VILA_COYO_MIN_CLIP_SCORE, else 0.28 (ViT-B-32/openai)
    batch_rows: int = 256  # pairs read and scored per step (the scorer batches and overlaps inside)
    max_exact_duplicate_rate: float = 0.01  # kept pairs whose JPEG repeats an earlier one, per shard
    max_near_duplicate_rate: float = 0.05  # kept pairs within 4 bits of an earlier one's pHash, per shard
    max_unscorable_rate: float = 0.05  # downloaded pairs the scorer could not decode, per shard

    def threshold(self) -> float:
        if self.min_clip_score is not None:
            return self.min_clip_score
        env = os.environ.get(MIN_CLIP_SCORE_ENV)
        return float(env) if env else DEFAULT_MIN_CLIP_SCORE


class CoyoSplitConfig(dg.Config):
    samples_per_part: int = VILA_SAMPLES_PER_PART
    decode_per_part: int = 32  # images per part decoded by the contract check (all are checked for presence)


# --- assets ---------------------------------------------------------------------------------------------


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"parquet", "huggingface"},
    description="One kakaobrain/coyo-700m parquet shard, downloaded through the `hub` resource at a pinned "
    "commit and checked against the COYO schema (a missing column or a wrong type fails, naming file and column).",
)
def coyo_metadata_shard(
    context: dg.AssetExecutionContext, config: CoyoMetadataConfig, data_root: DataRoot, hub: HubClient
) -> dg.MaterializeResult:
    try:
        sha = hub.resolve_revision(REPO_ID, config.revision)
    except HubError as exc:
        raise dg.Failure(str(exc)) from exc
    rows = 0
    for key in context.partition_keys:
        file = shard_filename(key)
        try:
            local = hub.download(REPO_ID, file, sha)
        except HubError as exc:
            raise dg.Failure(f"COYO shard {key}: {exc}") from exc
        try:
            report = validate_shard_schema(local, name=f"{REPO_ID}@{sha[:12]}/{file}")
        except CoyoSchemaError as exc:
            raise dg.Failure(str(exc)) from exc
        vf.write_json(_staging(data_root, key, "source.json"),
                      {"repo": REPO_ID, "revision": config.revision, "sha": sha, "file": file, "rows": report.rows})
        rows += report.rows
        md = {"rows": report.rows, "row_groups": report.row_groups, "file": file, "sha": sha}
        if report.extra_columns:
            md["extra_columns"] = dg.MetadataValue.json(report.extra_columns)
        context.add_asset_metadata(md, partition_key=key)
    return dg.MaterializeResult(
        metadata={"repo": REPO_ID, "revision": config.revision, "sha": sha, "shards_in_run": len(context.partition_keys),
                  "rows_in_run": rows}
    )


def _shard_local(hub: HubClient, source: dict) -> Path:
    """The shard's parquet at the pinned sha (a cache hit after coyo_metadata_shard)."""
    return hub.download(source["repo"], source["file"], source["sha"])


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"polars", "parquet"},
    deps=[coyo_metadata_shard],
    check_specs=[
        dg.AssetCheckSpec("selection_correct", asset="coyo_selection", blocking=True,
                          description="re-checked against the shard: every selected row is above the gate and at or "
                          "above the cut, rank order is (score desc, id asc), count = int(0.2 n) or every passing row"),
        dg.AssetCheckSpec("enough_rows_pass_gate", asset="coyo_selection", blocking=False,
                          description="at least int(0.2 n) rows pass vitb32 + vitl14 > 0.6 (VILA asserts this and "
                          "crashes; we select what passes and report the shortfall here)"),
    ],
    description="VILA's COYO selection per shard: vitb32 + vitl14 > 0.6, then the top int(0.2 n) by that sum, "
    "ties broken by id (VILA's sort was unstable). Polars streaming passes; memory bounded by bucket_rows.",
)
def coyo_selection(
    context: dg.AssetExecutionContext, config: CoyoSelectionConfig, data_root: DataRoot, hub: HubClient
) -> dg.MaterializeResult:
    cfg = SelectionConfig(config.fraction, config.min_score, config.oversample, config.bucket_rows)
    wrong: dict[str, str] = {}
    short: dict[str, str] = {}
    totals = Counter()
    for key in context.partition_keys:
        source = _read_json(_staging(data_root, key, "source.json"), "coyo_metadata_shard")
        local = _shard_local(hub, source)
        out = _staging(data_root, key, "selection.parquet")
        summary = select_top(local, out, cfg, name=f"{REPO_ID}@{source['sha'][:12]}/{source['file']}")
        vf.write_json(_staging(data_root, key, "selection.json"), summary.as_dict())
        for w in summary.warnings:
            context.log.warning(w)
        if check_selected(context, "selection_correct"):
            problems = verify_selection(local, out, summary)
            if problems:
                wrong[key] = "; ".join(problems)
        if summary.shortfall:
            short[key] = f"{summary.passing}/{summary.rows} pass, {summary.shortfall} short of {summary.target}"
        totals.update(rows=summary.rows, selected=summary.selected, shortfall=summary.shortfall)
        md = {
            "rows": summary.rows,
            "passing": summary.passing,
            "pass_rate": round(summary.pass_rate, 4),
            "target": summary.target,
            "selected": summary.selected,
            "shortfall": summary.shortfall,
            "cut": summary.cut if summary.cut is not None else float("nan"),
            "ties_at_cut": summary.ties_at_cut,
            "ties_kept": summary.ties_kept,
            "path": dg.MetadataValue.path(str(out)),
        }
        if summary.invalid:
            md["invalid_rows"] = dg.MetadataValue.md(counts_md("not ranked because", summary.invalid))
        context.add_asset_metadata(md, partition_key=key)
    checks = []
    n = len(context.partition_keys)
    if check_selected(context, "selection_correct"):
        checks.append(_per_shard_check("selection_correct", wrong, n, "every shard's selection re-checks"))
    if check_selected(context, "enough_rows_pass_gate"):
        checks.append(_per_shard_check("enough_rows_pass_gate", short, n, "every shard reaches int(0.2 n)",
                                       severity=dg.AssetCheckSeverity.WARN))
    return dg.MaterializeResult(
        metadata={"shards_in_run": n, "rows_in_run": totals["rows"], "selected_in_run": totals["selected"],
                  "shortfall_in_run": totals["shortfall"]},
        check_results=checks,
    )


def _crawl_range(context, data_root: DataRoot, crawler: ImageCrawler, keys: list[str]) -> None:
    """One crawl for the selections of all shards of the run, cut back into one samples.parquet per shard."""
    counts: dict = {}
    crawler.crawl_batch(
        data_root.staging(FAMILY, "_crawl", f"{keys[0]}-{keys[-1]}-{len(keys)}"),
        lambda path: counts.update(
            write_crawl_input({k: _staging(data_root, k, "selection.parquet") for k in keys}, path)
        ),
        lambda samples: split_crawl_samples(
            samples, counts, {k: _staging(data_root, k, "samples.parquet") for k in keys}
        ),
        progress_log=context.log,
    )


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"python", "parquet"},
    deps=[coyo_selection],
    check_specs=[
        dg.AssetCheckSpec("download_yield", asset="coyo_images", blocking=False,
                          description="downloaded / selected >= min_download_yield, for every shard of the run"),
    ],
    description="The selected URLs of each shard crawled through the `crawler` resource (one crawl per run), "
    "cut back into one samples.parquet per shard in selection (rank) order.",
)
def coyo_images(
    context: dg.AssetExecutionContext, config: CoyoImagesConfig, data_root: DataRoot, crawler: ImageCrawler
) -> dg.MaterializeResult:
    keys = list(context.partition_keys)
    _crawl_range(context, data_root, crawler, keys)
    low: dict[str, str] = {}
    totals = Counter()
    for key in keys:
        samples = _staging(data_root, key, "samples.parquet")
        table = pq.read_table(samples, columns=["status", "sha256", "phash"])
        status = Counter(table.column("status").to_pylist())
        n, ok = table.num_rows, status.get("ok", 0)
        ok_rows = table.filter(pc.equal(table.column("status"), "ok"))
        exact, near = duplicate_rates(ok_rows.column("sha256").to_pylist(), ok_rows.column("phash").to_pylist())
        y = ok / n if n else 0.0
        if n and y < config.min_download_yield:
            low[key] = f"yield {y:.3f} < {config.min_download_yield}"
        totals.update(selected=n, downloaded=ok)
        context.add_asset_metadata({
            "selected": n,
            "downloaded": ok,
            "download_yield": round(y, 4),
            "statuses": dg.MetadataValue.md(counts_md("crawl status", dict(status))),
            "exact_duplicate_rate_downloaded": round(exact, 4),
            "near_duplicate_rate_downloaded": round(near, 4),
            "path": dg.MetadataValue.path(str(samples)),
        }, partition_key=key)
    checks = []
    if check_selected(context, "download_yield"):
        checks.append(_per_shard_check("download_yield", low, len(keys), f"every shard's yield >= {config.min_download_yield}"))
    sel = totals["selected"]
    return dg.MaterializeResult(
        metadata={"shards_in_run": len(keys), "selected_in_run": sel, "downloaded_in_run": totals["downloaded"],
                  "download_yield_in_run": round(totals["downloaded"] / sel, 4) if sel else 0.0},
        check_results=checks,
    )


@dg.asset(
    partitions_def=coyo_shards,
    backfill_policy=BACKFILL,
    group_name=GROUP,
    kinds={"pytorch", "pickle"},
    deps=[coyo_images],
    pool="gpu",
    op_tags=gpu_op_tags(),
    check_specs=[
        dg.AssetCheckSpec("fresh_score_distribution", asset="coyo_clip_scored", blocking=True,
                          description="every downloaded pair got a fresh score (undecodable share <= "
                          "max_unscorable_rate); the fresh-score histogram is in the metadata"),
        dg.AssetCheckSpec("duplicate_rates_bounded", asset="coyo_clip_scored", blocking=False,
                          description="kept pairs: exact (sha256) and near (pHash <= 4 bits) duplicate rates "
                          "within max_exact_duplicate_rate / max_near_duplicate_rate"),
    ],
    description="CLIP re-score of what was actually downloaded (the 2021 metadata scores may describe images "
    "since replaced): pairs below the fresh threshold are dropped; writes VILA's per-shard coyo pickle and a "
    "per-sample manifest with agreement between metadata and fresh scores. Runs in the `gpu` pool; on k8s "
    "the step pod requests nvidia.com/gpu: 1.",
)
def coyo_clip_scored(
    context: dg.AssetExecutionContext, config: CoyoClipConfig, data_root: DataRoot, clip: ClipScorer
) -> dg.MaterializeResult:
    threshold = config.threshold()
    scorer = clip.describe()
    context.log.info(f"scoring with {scorer}, threshold {threshold}")
    unscorable: dict[str, str] = {}
    dupes: dict[str, str] = {}
    all_scores: list[float] = []
    totals = Counter()
    for key in context.partition_keys:
        sel_summary = SelectionSummary(**{k: v for k, v in _read_json(_staging(data_root, key, "selection.json"),
                                                                       "coyo_selection").items()
                                          if k in SelectionSummary.__dataclass_fields__})
        manifest = data_root.manifests(FAMILY, "samples", f"{key}.parquet")
        pickle_path = data_root.staging(FAMILY, "pkl", f"{key}.pkl")
        s = rescore_shard(
            _staging(data_root, key, "selection.parquet"),
            _staging(data_root, key, "samples.parquet"),
            lambda images, texts: clip.score_pairs(images, texts),
            RescoreConfig(
                min_fresh_score=threshold,
                target=sel_summary.target if sel_summary.oversample > 1 else None,
                vila_target=sel_summary.target,
                batch_rows=config.batch_rows,
            ),
            manifest,
            pickle_path,
        )
        vf.write_json(data_root.manifests(FAMILY, "shards", f"{key}.json"), s.as_dict())
        png = histogram_png(s.fresh_scores, threshold)
        png_path = atomic_write_bytes(data_root.reports(FAMILY, f"fresh_scores_{key}.png"), png)
        all_scores += s.fresh_scores
        scorable = s.crawl_counts.get("ok", 0) - s.dropped.get("missing text", 0)
        bad = scorable - s.scored
        if scorable and bad / scorable > config.max_unscorable_rate:
            unscorable[key] = f"{bad} of {scorable} downloaded pairs unscorable"
        if s.exact_duplicate_rate > config.max_exact_duplicate_rate or s.near_duplicate_rate > config.max_near_duplicate_rate:
            dupes[key] = f"exact {s.exact_duplicate_rate:.3f}, near {s.near_duplicate_rate:.3f}"
        totals.update(selected=s.selected, downloaded=s.downloaded, scored=s.scored, kept=s.kept,
                      below=s.below_threshold)
        context.add_asset_metadata({
            "selected": s.selected,
            "downloaded": s.downloaded,
            "scored": s.scored,
            "kept": s.kept,
            "kept_yield": round(s.yield_kept, 4),
            "dropped_below_threshold": s.below_threshold,
            "threshold": threshold,
            "spearman_fresh_vs_metadata_sum": _num(s.spearman_vs_metadata_sum),
            "spearman_fresh_vs_metadata_vitb32": _num(s.spearman_vs_metadata_vitb32),
            "pass_agreement": _num(s.pass_agreement),
            "exact_duplicate_rate": round(s.exact_duplicate_rate, 4),
            "near_duplicate_rate": round(s.near_duplicate_rate, 4),
            "drop_reasons": dg.MetadataValue.md(counts_md("dropped because", s.dropped)) if s.dropped else "none",
            "fresh_score_histogram": dg.MetadataValue.path(str(png_path)),
            "manifest": dg.MetadataValue.path(str(manifest)),
            "pickle": dg.MetadataValue.path(str(pickle_path)),
        }, partition_key=key)
    n = len(context.partition_keys)
    chart = _chart_md(all_scores, threshold)
    checks = []
    if check_selected(context, "fresh_score_distribution"):
        r = _per_shard_check("fresh_score_distribution", unscorable, n, "every downloaded pair was scored")
        checks.append(r.with_metadata({**r.metadata, "histogram": dg.MetadataValue.md(chart)}))
    if check_selected(context, "duplicate_rates_bounded"):
        checks.append(_per_shard_check("duplicate_rates_bounded", dupes, n, "duplicate rates within bounds"))
    sel = totals["selected"]
    return dg.MaterializeResult(
        metadata={
            "shards_in_run": n,
            "scorer": dg.MetadataValue.json(scorer),
            "threshold": threshold,
            "kept_in_run": totals["kept"],
            "kept_yield_in_run": round(totals["kept"] / sel, 4) if sel else 0.0,
            "dropped_below_threshold_in_run": totals["below"],
            "fresh_scores": dg.MetadataValue.md(chart),
        },
        check_results=checks,
    )


def _num(x: float | None) -> float:
    return float("nan") if x is None else round(x, 4)


def _chart_md(scores: list[float], threshold: float) -> str:
    """Histogram as an inline PNG (a few KB) plus the same counts as a table."""
    png = base64.b64encode(histogram_png(scores, threshold)).decode("ascii")
    return f"![fresh CLIP scores](data:image/png;base64,{png})\n\n" + histogram_markdown(scores, threshold)


@dg.asset(
    group_name=GROUP,
    kinds={"pickle"},
    deps=[coyo_clip_scored],
    check_specs=[
        dg.AssetCheckSpec("vila_contract", asset="coyo_split", blocking=True,
                          description="LazyCoyoDataset can read pkl02-split: only .pkl/.count pairs, .count = length, "
                          "every record has text and an image that decodes to RGB, parts equal-size but the last"),
    ],
    description="VILA's coyo_splitter: every materialized shard's kept records (shard order, then rank) cut into "
    "equal-size part-%05d.pkl + .count under playground/data/coyo-700m/pkl02-split (12,440 per part); the "
    "remainder is a last short part, never dropped. Shards not materialized are listed in the metadata.",
)
def coyo_split(context: dg.AssetExecutionContext, config: CoyoSplitConfig, data_root: DataRoot) -> dg.MaterializeResult:
    done = context.instance.get_materialized_partitions(coyo_clip_scored.key)
    shards = []
    for key in SHARD_KEYS:
        if key not in done:
            continue
        out = ShardOutput(key, data_root.manifests(FAMILY, "samples", f"{key}.parquet"),
                          _staging(data_root, key, "samples.parquet"))
        if not (out.manifest.is_file() and out.samples.is_file()):
            raise dg.Failure(f"shard {key} is materialized but {out.manifest} or {out.samples} is missing; "
                             "re-materialize coyo_images and coyo_clip_scored for it")
        shards.append(out)
    if not shards:
        raise dg.Failure("no coyo_clip_scored shard is materialized yet")
    missing = [k for k in SHARD_KEYS if k not in done]
    out_dir = vf.registry_path("coyo", data_root.path())
    split_manifest = data_root.manifests(FAMILY, "split.parquet")
    s = split_shards(shards, out_dir, config.samples_per_part, split_manifest)
    if s.remainder:
        context.log.info(f"last part {vf.registry_path('coyo', '.')}/part-{s.parts - 1:05d} holds the remainder: "
                         f"{s.remainder} of {s.samples_per_part} (VILA's splitter dropped it)")
    if missing:
        context.log.warning(f"{len(missing)} of {len(SHARD_KEYS)} shards not materialized, not in the split: "
                            f"{_ranges(missing)}")
    checks = []
    if check_selected(context, "vila_contract"):
        report = check_split_dir(out_dir, config.samples_per_part, config.decode_per_part)
        checks.append(dg.AssetCheckResult(
            check_name="vila_contract",
            passed=not report.problems,
            metadata={"parts": report.parts, "records": report.records, "images_decoded": report.decoded,
                      "problems": dg.MetadataValue.json(report.problems[:20])},
            description=f"{len(report.problems)} problem(s): " + "; ".join(report.problems[:5]) if report.problems
            else f"{report.parts} parts, {report.records} records readable as LazyCoyoDataset reads them",
        ))
    return dg.MaterializeResult(
        metadata={
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
            "path": dg.MetadataValue.path(str(out_dir)),
            "manifest": dg.MetadataValue.path(str(split_manifest)),
        },
        check_results=checks,
    )


def _ranges(keys: list[str]) -> str:
    """ "00003-00007, 00010" for a sorted list of shard keys."""
    out, start, prev = [], None, None
    for k in keys:
        i = int(k)
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start:05d}" if start == prev else f"{start:05d}-{prev:05d}")
            start = prev = i
    if start is not None:
        out.append(f"{start:05d}" if start == prev else f"{start:05d}-{prev:05d}")
    return ", ".join(out)


SHARD_ASSETS = [coyo_metadata_shard, coyo_selection, coyo_images, coyo_clip_scored]
ASSETS = [*SHARD_ASSETS, coyo_split]

defs = dg.Definitions(assets=ASSETS)


def demo_steps(resources: dict, scale: str) -> list[DemoStep]:
    """One ranged run over the first shards (the big ones of the sample world), then the split."""
    keys = SHARD_KEYS[:4] if scale == "test" else SHARD_KEYS[:8]
    return [
        DemoStep(
            name="coyo: shards -> re-scored pickles",
            assets=tuple(a.key.to_user_string() for a in SHARD_ASSETS),
            partitions=tuple(keys),
            order=30,
        ),
        DemoStep(
            name="coyo: split into parts",
            assets=("coyo_split",),
            # The sample world keeps ~150 samples: small parts show the equal-size + remainder layout.
            run_config={"ops": {"coyo_split": {"config": {"samples_per_part": 32}}}},
            order=31,
        ),
    ]
