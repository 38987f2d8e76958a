"""VFLAN for SFT: a seeded FLAN 1M sample, the 14 M3IT tasks, and the 128 shuffled chunks VILA trains on.

Assets (group ``vflan``):
- ``flan_1m``: every ``*_data`` folder of ``Open-Orca/FLAN`` (revision-pinned) sampled to N rows
  (config ``sample_size``; default ``$VILA_FLAN_SAMPLE_SIZE`` or 1,000,000) by a seeded hash of
  (file path, row) -> ``staging/vflan/new-vflan/text_flan_1m.pkl`` (+ Parquet copy). See ``core.flan``.
- ``m3it_tasks``: the 14 M3IT tasks VILA uses, read from the task files ->
  ``staging/vflan/new-vflan/{type}_{name}_train.pkl`` (+ Parquet copies); bad records listed in
  ``manifests/vflan/m3it_invalid.parquet``. See ``core.m3it``.
- ``vflan_chunks``: FLAN + M3IT shuffled by a seeded hash of (file, row) into 128 chunks ->
  ``playground/data/vlm-flan-clean-text1m-nosqa-sharded/part-%05d.pkl`` + ``.count`` (VILA's registry
  path; nothing else in that directory). One partition per chunk; the partition set is fixed at
  VILA's 128, so changing the count means a new ``StaticPartitionsDefinition`` (and a new asset
  history), not a config value. ``BackfillPolicy.single_run()``: a backfill of all chunks is one run that
  scans the sources once. The shuffle index is ``manifests/vflan/shuffle_plan.parquet``; per-chunk
  manifests (for the duplicate report) sit in ``manifests/vflan/chunks/``. See ``core.vflan``.

The per-file pickles stay in staging (why: ``core.vflan`` docstring).
"""

import os
import pickle
import shutil

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from vila_assets.assets._metadata import bar, md_table
from vila_assets.core import flan as flan_core
from vila_assets.core import m3it as m3it_core
from vila_assets.core import vflan as vflan_core
from vila_assets.core.atomic import atomic_path
from vila_assets.core.vila_format import loader_shards, read_count, registry_path, validate_shard_dir
from vila_assets.demo_plan import DemoStep
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot

FAMILY = "vflan"
SAMPLE_SIZE_ENV = "VILA_FLAN_SAMPLE_SIZE"
CHUNK_KEYS = [f"{i:05d}" for i in range(vflan_core.N_CHUNKS)]
VFLAN_CHUNKS = dg.StaticPartitionsDefinition(CHUNK_KEYS)


def per_file_layout(data_root: DataRoot) -> vflan_core.PerFileLayout:
    return vflan_core.PerFileLayout(data_root.staging(FAMILY, "new-vflan"), data_root.staging(FAMILY, "parquet"))


# --- FLAN 1M ------------------------------------------------------------------------------------------


class FlanConfig(dg.Config):
    revision: str = "main"  # branch, tag or commit of Open-Orca/FLAN; resolved to a sha (metadata)
    sample_size: int | None = None  # None: $VILA_FLAN_SAMPLE_SIZE, else 1,000,000
    seed: int = 0  # a different seed gives a different sample


def _sample_size(config: FlanConfig) -> int:
    if config.sample_size is not None:
        return config.sample_size
    return int(os.environ.get(SAMPLE_SIZE_ENV, flan_core.DEFAULT_SAMPLE_SIZE))


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "parquet"},
    description="FLAN 1M: a seeded, streaming sample of Open-Orca/FLAN as text_flan_1m.pkl (VILA's record format).",
    check_specs=[
        dg.AssetCheckSpec("flan_sample_size", asset="flan_1m", description="records == min(sample_size, rows in FLAN)"),
        dg.AssetCheckSpec("flan_folders_present", asset="flan_1m", description="all 14 *_data folders had parts"),
    ],
)
def flan_1m(context: dg.AssetExecutionContext, config: FlanConfig, hub: HubClient, data_root: DataRoot) -> dg.MaterializeResult:
    repo = flan_core.FLAN_REPO
    sha = hub.resolve_revision(repo, config.revision)
    rels = [f for f in hub.list_files(repo, sha) if flan_core.is_flan_part(f)]
    if not rels:
        raise dg.Failure(f"{repo}@{sha}: no *_data/**/*.parquet files")
    parts = [flan_core.FlanPart(rel, hub.download(repo, rel, sha)) for rel in rels]
    n = _sample_size(config)
    layout = per_file_layout(data_root)
    try:
        summary = flan_core.sample_flan(parts, n, config.seed, layout)
    except flan_core.FlanInputError as exc:
        raise dg.Failure(f"{repo}@{sha}: {exc}") from None
    expected = min(n, summary.total_rows)
    folders = sorted({r.split("/", 1)[0] for r in rels})
    missing = [f for f in flan_core.FLAN_FOLDERS if f not in folders]
    most = max(summary.folders.values(), default=0)
    return dg.MaterializeResult(
        metadata={
            "revision_sha": sha,
            "records": summary.info.rows,
            "rows_in_flan": summary.total_rows,
            "parts": summary.parts,
            "sample_size": n,
            "seed": config.seed,
            "yield": round(summary.info.rows / summary.total_rows, 4) if summary.total_rows else 0.0,
            "max_candidates_held": summary.max_candidates,
            "by_folder": md_table(
                ("folder", "records", ""), [(f, c, bar(c, most)) for f, c in summary.folders.items()]
            ),
            "path": dg.MetadataValue.path(str(layout.pickle(vflan_core.FLAN_STEM))),
            "sha256": summary.info.sha256,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="flan_sample_size",
                passed=summary.info.rows == expected,
                metadata={"records": summary.info.rows, "expected": expected},
            ),
            dg.AssetCheckResult(
                check_name="flan_folders_present",
                passed=not missing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"folders": len(folders), "missing": ", ".join(missing) or "none"},
            ),
        ],
    )


# --- M3IT ----------------------------------------------------------------------------------------------


class M3ITConfig(dg.Config):
    revision: str = "main"  # branch, tag or commit of MMInstruction/M3IT
    max_invalid_fraction: float = 0.05  # the invalid-records check warns above this share of lines


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "parquet"},
    description="The 14 M3IT tasks VILA uses, read from the task files, as {type}_{name}_train.pkl (images base64).",
    check_specs=[
        dg.AssetCheckSpec("m3it_tasks_present", asset="m3it_tasks", description="each of the 14 tasks has records"),
        dg.AssetCheckSpec(
            "m3it_invalid_records", asset="m3it_tasks", description="share of unusable records <= max_invalid_fraction"
        ),
    ],
)
def m3it_tasks(context: dg.AssetExecutionContext, config: M3ITConfig, hub: HubClient, data_root: DataRoot) -> dg.MaterializeResult:
    repo = m3it_core.M3IT_REPO
    sha = hub.resolve_revision(repo, config.revision)
    layout = per_file_layout(data_root)
    summaries = []
    for task in m3it_core.TASKS:
        train = hub.download(repo, task.train_file(), sha)
        instructions = hub.download(repo, task.instructions_file(), sha)
        try:
            s = m3it_core.convert_task(task, train, instructions, layout)
        except ValueError as exc:
            raise dg.Failure(f"{repo}@{sha} {task.name}: {exc}") from None
        context.log.info("%s: %d records, %d invalid", task.stem, s.records, len(s.invalid))
        summaries.append(s)

    invalid = [r for s in summaries for r in s.invalid]
    invalid_path = data_root.manifests(FAMILY, "m3it_invalid.parquet")
    table = pa.Table.from_pylist(
        [vars(r) for r in invalid],
        schema=pa.schema([("task", pa.string()), ("file", pa.string()), ("line", pa.int64()), ("reason", pa.string()), ("detail", pa.string())]),
    )
    with atomic_path(invalid_path) as tmp:
        pq.write_table(table, tmp)
    lines = sum(s.lines for s in summaries)
    records = sum(s.records for s in summaries)
    reasons: dict[str, int] = {}
    for r in invalid:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    empty = [s.task.name for s in summaries if s.records == 0]
    fraction = len(invalid) / lines if lines else 0.0
    return dg.MaterializeResult(
        metadata={
            "revision_sha": sha,
            "records": records,
            "images": sum(s.images for s in summaries),
            "invalid_records": len(invalid),
            "yield": round(records / lines, 4) if lines else 0.0,
            "tasks": md_table(
                ("file", "records", "images", "invalid"),
                [(s.task.stem + ".pkl", s.records, s.images, len(s.invalid)) for s in summaries],
            ),
            "invalid_by_reason": dg.MetadataValue.json(dict(sorted(reasons.items()))),
            "invalid_examples": dg.MetadataValue.md(
                "\n".join(f"- `{r.file}` line {r.line}: {r.reason} ({r.detail})" for r in invalid[:10]) or "none"
            ),
            "invalid_list": dg.MetadataValue.path(str(invalid_path)),
            "path": dg.MetadataValue.path(str(layout.pickle_dir)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="m3it_tasks_present",
                passed=not empty,
                metadata={"tasks": len(summaries), "empty": ", ".join(empty) or "none"},
            ),
            dg.AssetCheckResult(
                check_name="m3it_invalid_records",
                passed=fraction <= config.max_invalid_fraction,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"invalid": len(invalid), "lines": lines, "fraction": round(fraction, 4)},
            ),
        ],
    )


# --- VFLAN chunks -----------------------------------------------------------------------------------------


class VflanChunksConfig(dg.Config):
    seed: int = 1  # shuffle seed (VILA used random.seed(1); the permutation itself is ours)
    max_duplicate_fraction: float = 0.05  # the duplicate check warns above this share of identical records


def vflan_sources(data_root: DataRoot) -> list[vflan_core.SourceInfo]:
    layout = per_file_layout(data_root)
    return [layout.read_info(stem) for stem in (vflan_core.FLAN_STEM, *m3it_core.TASK_STEMS)]


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "pickle"},
    partitions_def=VFLAN_CHUNKS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[flan_1m, m3it_tasks],
    description="FLAN + M3IT shuffled (seeded) into 128 chunks at VILA's vflan registry path (.pkl + .count).",
    check_specs=[
        dg.AssetCheckSpec(
            "vflan_record_schema", asset="vflan_chunks", blocking=True,
            description="question/answer str, image list of base64 str, visual-dialog text parses as VILA's loader does",
        ),
        dg.AssetCheckSpec(
            "vflan_counts", asset="vflan_chunks",
            description="every chunk on disk matches the current plan; all 128 sum to FLAN + M3IT",
        ),
        dg.AssetCheckSpec(
            "vflan_duplicates", asset="vflan_chunks",
            description="identical (question, answer) pairs and identical records, reported; warns above a share",
        ),
        dg.AssetCheckSpec(
            "vflan_loader_contract", asset="vflan_chunks", blocking=True,
            description="only .pkl/.count pairs in the directory; counts equal the pickles written",
        ),
    ],
)
def vflan_chunks(context: dg.AssetExecutionContext, config: VflanChunksConfig, data_root: DataRoot) -> dg.MaterializeResult:
    chunks = sorted(int(k) for k in context.partition_keys)
    try:
        sources = vflan_sources(data_root)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(str(exc)) from None
    plan = vflan_core.make_shuffle_plan(sources, config.seed)
    vflan_core.write_plan_index(plan, data_root.manifests(FAMILY, "shuffle_plan.parquet"))
    out_dir = registry_path("vflan", data_root.path())
    manifest_dir = data_root.manifests(FAMILY, "chunks")
    work_dir = data_root.staging(FAMILY, "spill", context.run.run_id)
    try:
        results = vflan_core.build_chunks(plan, per_file_layout(data_root), chunks, out_dir, manifest_dir, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    context.log.info("wrote %d chunks (%d records) of plan %s", len(results), sum(r.count for r in results), plan.fingerprint)

    # schema: every record written in this run
    n_problems = sum(r.n_problems for r in results)
    examples = [p for r in results for p in r.problems][:10]

    # counts: every chunk on disk against the current plan
    all_chunks = range(plan.n_chunks)
    built_with = vflan_core.chunk_fingerprints(manifest_dir, all_chunks)
    missing = [c for c in all_chunks if not (out_dir / f"{vflan_core.chunk_stem(c)}.count").exists()]
    stale = [c for c, fp in built_with.items() if c not in missing and fp != plan.fingerprint]
    wrong = [
        c for c in all_chunks
        if c not in missing and read_count(out_dir / f"{vflan_core.chunk_stem(c)}.count") != plan.sizes[c]
    ]
    empty = sum(1 for s in plan.sizes if s == 0)
    on_disk = sum(read_count(out_dir / f"{vflan_core.chunk_stem(c)}.count") for c in all_chunks if c not in missing)
    counts_ok = not (missing or stale or wrong)

    # duplicates: over every chunk built from the current plan
    current = [c for c, fp in built_with.items() if fp == plan.fingerprint]
    dups = vflan_core.duplicate_report(manifest_dir, current)
    dup_fraction = dups.duplicate_records / dups.records if dups.records else 0.0

    # loader contract: directory layout + what was written in this run, read back as the loader does
    contract = validate_shard_dir(out_dir, check_lengths=False)
    stems = {s.stem for s in loader_shards(out_dir)}
    contract += [f"{out_dir}: unexpected shard {s!r}" for s in sorted(stems - {vflan_core.chunk_stem(c) for c in all_chunks})]
    for r in results:
        with open(r.pkl, "rb") as fh:
            n = len(pickle.load(fh))
        if n != read_count(r.pkl.with_suffix(".count")):
            contract.append(f"{r.pkl}: holds {n} records but its .count says otherwise")

    by_source: dict[str, int] = {}
    for r in results:
        for stem, n in r.sources.items():
            by_source[stem] = by_source.get(stem, 0) + n
    most = max(by_source.values(), default=0)
    sizes = [r.count for r in results]
    return dg.MaterializeResult(
        metadata={
            "chunks_written": len(results),
            "records": sum(sizes),
            "images": sum(r.images for r in results),
            "chunk_size_min": min(sizes, default=0),
            "chunk_size_max": max(sizes, default=0),
            "total_planned": plan.total,
            "plan_fingerprint": plan.fingerprint,
            "seed": config.seed,
            "by_source": md_table(("source", "records", ""), [(s, n, bar(n, most)) for s, n in sorted(by_source.items())]),
            "path": dg.MetadataValue.path(str(out_dir)),
            "plan_index": dg.MetadataValue.path(str(data_root.manifests(FAMILY, "shuffle_plan.parquet"))),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="vflan_record_schema",
                passed=n_problems == 0,
                metadata={"problems": n_problems, "examples": dg.MetadataValue.md("\n".join(f"- {p}" for p in examples) or "none")},
            ),
            dg.AssetCheckResult(
                check_name="vflan_counts",
                passed=counts_ok,
                # only absent chunks (a partial backfill) is a warning; stale or wrong counts are errors
                severity=dg.AssetCheckSeverity.WARN if (missing and not stale and not wrong) else dg.AssetCheckSeverity.ERROR,
                description=(
                    f"{empty} planned chunk(s) are empty: VILA's sharded loader gives a rank with only empty chunks no data"
                    if empty else None
                ),
                metadata={
                    "records_on_disk": on_disk,
                    "expected_total": plan.total,
                    "chunks_missing": len(missing),
                    "chunks_stale": len(stale),
                    "chunks_wrong_count": len(wrong),
                    "empty_chunks_planned": empty,
                },
            ),
            dg.AssetCheckResult(
                check_name="vflan_duplicates",
                passed=dup_fraction <= config.max_duplicate_fraction,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "records_checked": dups.records,
                    "duplicate_pairs": dups.duplicate_pairs,
                    "duplicate_records": dups.duplicate_records,
                    "duplicate_record_fraction": round(dup_fraction, 4),
                    "duplicate_pairs_by_source": dg.MetadataValue.json(dups.by_source),
                },
            ),
            dg.AssetCheckResult(
                check_name="vflan_loader_contract",
                passed=not contract,
                metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in contract[:10]) or "none")},
            ),
        ],
    )


defs = dg.Definitions(assets=[flan_1m, m3it_tasks, vflan_chunks])


def demo_steps(resources: dict, scale: str) -> list[DemoStep]:
    """FLAN + M3IT, then every chunk in one ranged run (what a single_run backfill does)."""
    return [
        DemoStep("vflan: FLAN 1M + M3IT tasks", ("flan_1m", "m3it_tasks"), order=20),
        DemoStep("vflan: 128 chunks (one ranged run)", ("vflan_chunks",), partitions=tuple(CHUNK_KEYS), order=20),
    ]
