"""The VFLAN assets: wiring, publishing, metadata and checks. The work is in ``core.flan``, ``core.m3it``
and ``core.vflan``; every path comes from :class:`VflanLayout`; what differs between the data policies is
decided there (``data_policy`` resource) and recorded here as ``policy`` metadata."""

import pickle
import shutil
from collections import Counter

import dagster as dg

from vila_assets.assets._checks import Findings
from vila_assets.assets._metadata import bar, md_table, path_value
from vila_assets.assets._sharded import ShardedRun
from vila_assets.assets.vflan import checks
from vila_assets.assets.vflan.config import M3itConfig, VflanChunksChecks, VflanChunksConfig
from vila_assets.assets.vflan.layout import FAMILY, VflanLayout
from vila_assets.assets.vflan.partitions import CHUNK_KEYS, VFLAN_BACKFILL, vflan_chunk_partitions
from vila_assets.assets.vflan.sources import FlanSource, M3itSource
from vila_assets.core import flan as flan_core
from vila_assets.core import m3it as m3it_core
from vila_assets.core import vflan as vflan_core
from vila_assets.core.hub import HubError
from vila_assets.core.policy import Policy
from vila_assets.core.source_tree import SourceError, SourceTree
from vila_assets.core.train_layout import usable_records
from vila_assets.core.vila_format import loader_shards, read_count, validate_shard_dir
from vila_assets.resources.hub import HubClient
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import DataRoot

# How many problems a check's metadata lists (the rest are counted).
EXAMPLES = 10
# What a source can fail with; the message names the location and the file.
SOURCE_ERRORS = (SourceError, HubError)


def _examples_md(lines: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n".join(f"- {p}" for p in lines[:EXAMPLES]) or "none")


def _publish_per_file(data_root: DataRoot, layout: VflanLayout, stems) -> None:
    for stem in stems:
        data_root.publish(*layout.per_file_outputs(stem))


def _source_metadata(tree: SourceTree) -> dict:
    return {"location": tree.location, "revision_sha": tree.revision}


def _open(source: FlanSource | M3itSource, hub: HubClient, data_root: DataRoot) -> SourceTree:
    """The source's tree (URL copies cached under the data root); a malformed location fails the run."""
    try:
        return source.tree(hub, data_root.cache("sources"))
    except SourceError as exc:
        raise dg.Failure(str(exc)) from None


# --- FLAN 1M ------------------------------------------------------------------------------------------------


def _flan_findings(summary: flan_core.FlanSampleSummary, sample_size: int, policy: Policy, rels: list[str]) -> Findings:
    findings = Findings(checks.FLAN_CHECKS)
    rows = summary.info.rows
    expected = sample_size if policy is Policy.vila else min(sample_size, summary.total_rows)
    findings.expect(checks.SAMPLE_SIZE.name, vflan_core.FLAN_STEM, rows == expected, f"{rows} records, expected {expected}")
    findings.add_metadata(checks.SAMPLE_SIZE.name, records=rows, expected=expected)
    folders = {r.split("/", 1)[0] for r in rels}
    for folder in flan_core.FLAN_FOLDERS:
        findings.expect(checks.FOLDERS_PRESENT.name, folder, folder in folders, "no part files")
    missing = [f for f in flan_core.FLAN_FOLDERS if f not in folders]
    findings.add_metadata(checks.FOLDERS_PRESENT.name, folders=len(folders), missing=", ".join(missing) or "none")
    return findings


def _sample_flan(tree: SourceTree, source: FlanSource, policy: Policy, layout: VflanLayout):
    """(summary, part files read, files skipped): every part fetched, then sampled."""
    rels, skipped = flan_core.part_paths(tree.list_files(), policy)
    if not rels:
        raise flan_core.FlanInputError("no files below top-level *_data folders")
    parts = [flan_core.FlanPart(rel, tree.fetch(rel)) for rel in rels]
    summary = flan_core.sample_flan(parts, source.sample_size, source.seed, layout.per_file, policy=policy)
    return summary, rels, skipped


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "parquet"},
    description="FLAN 1M: Open-Orca/FLAN sampled as text_flan_1m.pkl (VILA's record format), streaming; "
                "vila: VILA's linspace rows, curated: a seeded sample.",
    check_specs=[c.spec("flan_1m") for c in checks.FLAN_CHECKS],
)
def flan_1m(flan_source: FlanSource, hub: HubClient, data_root: DataRoot, data_policy: DataPolicy) -> dg.MaterializeResult:
    policy, layout = data_policy.policy, VflanLayout(data_root)
    tree = _open(flan_source, hub, data_root)
    try:
        summary, rels, skipped = _sample_flan(tree, flan_source, policy, layout)
    except (ValueError, *SOURCE_ERRORS) as exc:  # FlanInputError names the part file
        raise dg.Failure(f"{tree.describe()}: {exc}") from None
    _publish_per_file(data_root, layout, [vflan_core.FLAN_STEM])
    most = max(summary.folders.values(), default=0)
    return dg.MaterializeResult(
        metadata={
            **_source_metadata(tree),
            "policy": policy.value,
            "selection": "torch.linspace over VILA's file order" if policy is Policy.vila else "seeded hash of (file, row)",
            "records": summary.info.rows,
            "rows_in_flan": summary.total_rows,
            "parts": summary.parts,
            "sample_size": flan_source.sample_size,
            "seed": flan_source.seed if policy is Policy.curated else None,
            "indices_past_end": summary.past_end,
            "files_skipped": _examples_md(skipped),
            "yield": round(summary.info.rows / summary.total_rows, 4) if summary.total_rows else 0.0,
            "max_candidates_held": summary.max_candidates,
            "by_folder": md_table(("folder", "records", ""), [(f, c, bar(c, most)) for f, c in summary.folders.items()]),
            "path": path_value(data_root, layout.per_file_outputs(vflan_core.FLAN_STEM)[0]),
            "sha256": summary.info.sha256,
        },
        check_results=_flan_findings(summary, flan_source.sample_size, policy, rels).results(),
    )


# --- M3IT ---------------------------------------------------------------------------------------------------

def _convert_tasks(context, tree: SourceTree, layout: VflanLayout, policy: Policy) -> list[m3it_core.TaskSummary]:
    summaries = []
    for task in m3it_core.TASKS:
        try:
            train = tree.fetch(task.train_file())
            instructions = tree.fetch(task.instructions_file())
            s = m3it_core.convert_task(task, train, instructions, layout.per_file, policy=policy)
        except (ValueError, OSError, *SOURCE_ERRORS) as exc:
            raise dg.Failure(f"{tree.describe()} ({task.name}): {exc}") from None
        context.log.info("%s: %d records, %d problem lines (%d dropped)", task.stem, s.records, len(s.invalid), s.dropped)
        summaries.append(s)
    return summaries


def _m3it_findings(summaries: list[m3it_core.TaskSummary], config: M3itConfig) -> Findings:
    findings = Findings(checks.M3IT_CHECKS)
    for s in summaries:
        findings.expect(checks.TASKS_PRESENT.name, s.task.name, s.records > 0, "no records")
    empty = [s.task.name for s in summaries if s.records == 0]
    findings.add_metadata(checks.TASKS_PRESENT.name, tasks=len(summaries), empty=", ".join(empty) or "none")
    invalid = sum(len(s.invalid) for s in summaries)
    lines = sum(s.lines for s in summaries)
    fraction = invalid / lines if lines else 0.0
    findings.bound(checks.INVALID_RECORDS.name, "M3IT", fraction, config.checks.max_invalid_fraction,
                   at_least=False, what="share of problem lines")
    findings.add_metadata(checks.INVALID_RECORDS.name, invalid=invalid, dropped=sum(s.dropped for s in summaries),
                          lines=lines, fraction=round(fraction, 4))
    return findings


def _m3it_metadata(summaries: list[m3it_core.TaskSummary], layout: VflanLayout, data_root: DataRoot) -> dict:
    invalid = [r for s in summaries for r in s.invalid]
    lines = sum(s.lines for s in summaries)
    records = sum(s.records for s in summaries)
    return {
        "records": records,
        "images": sum(s.images for s in summaries),
        "invalid_records": len(invalid),
        "dropped_records": sum(not r.kept for r in invalid),
        "kept_with_problems": sum(r.kept for r in invalid),
        "yield": round(records / lines, 4) if lines else 0.0,
        "tasks": md_table(("file", "read from", "records", "images", "problems"),
                          [(layout.per_file_outputs(s.task.stem)[0].name, s.task.train_file(), s.records, s.images,
                            len(s.invalid)) for s in summaries]),
        "invalid_by_reason": dg.MetadataValue.json(dict(sorted(Counter(r.reason for r in invalid).items()))),
        "invalid_examples": _examples_md([f"`{r.file}` line {r.line}: {r.reason} ({r.detail})"
                                          f"{' (kept)' if r.kept else ''}" for r in invalid]),
        "invalid_list": path_value(data_root, layout.m3it_invalid),
        "path": path_value(data_root, layout.per_file.pickle_dir),
    }


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "parquet"},
    description="The 14 M3IT tasks VILA uses, read from the task files, as {type}_{name}_train.pkl (images base64).",
    check_specs=[c.spec("m3it_tasks") for c in checks.M3IT_CHECKS],
)
def m3it_tasks(context: dg.AssetExecutionContext, config: M3itConfig, m3it_source: M3itSource, hub: HubClient,
               data_root: DataRoot, data_policy: DataPolicy) -> dg.MaterializeResult:
    layout = VflanLayout(data_root)
    tree = _open(m3it_source, hub, data_root)
    summaries = _convert_tasks(context, tree, layout, data_policy.policy)
    m3it_core.write_invalid_list([r for s in summaries for r in s.invalid], layout.m3it_invalid)
    _publish_per_file(data_root, layout, m3it_core.TASK_STEMS)
    data_root.publish(layout.m3it_invalid)
    return dg.MaterializeResult(
        metadata={**_source_metadata(tree), "policy": data_policy.policy.value,
                  **_m3it_metadata(summaries, layout, data_root)},
        check_results=_m3it_findings(summaries, config).results(),
    )


# --- VFLAN chunks -------------------------------------------------------------------------------------------


def _shuffle_plan(layout: VflanLayout, seed: int, data_policy: DataPolicy) -> vflan_core.ShufflePlan:
    """The policy's plan over what ``flan_1m`` and ``m3it_tasks`` published (fetched first); its index
    published."""
    data_root = layout.data_root
    infos = []
    try:
        for stem in (vflan_core.FLAN_STEM, *m3it_core.TASK_STEMS):
            _, parquet, sidecar = layout.per_file_outputs(stem)
            data_root.fetch(parquet)
            data_root.fetch(sidecar)
            infos.append(layout.per_file.read_info(stem))
        plan = vflan_core.plan_for(data_policy.policy, infos, seed, data_policy.train_world_size)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(f"{exc} (policy {data_policy.policy.value}, train_world_size "
                         f"{data_policy.train_world_size})") from None
    data_root.publish(vflan_core.write_plan_index(plan, layout.shuffle_plan))
    return plan


def _remove_stale_tail(layout: VflanLayout, plan: vflan_core.ShufflePlan, wanted: list[int]) -> int:
    """The run that owns the last partition removes parts a previous, longer plan left past this plan's end
    (VILA's loader would read them)."""
    if vflan_core.N_CHUNKS - 1 not in wanted:
        return 0
    stale = vflan_core.stale_chunk_files(layout.chunks_dir, plan)
    for path in stale:
        path.unlink()
        layout.chunk_manifest(int(path.stem.split("-")[1])).unlink(missing_ok=True)
    return len(stale)


def _build(run: ShardedRun, layout: VflanLayout, plan: vflan_core.ShufflePlan) -> list[vflan_core.ChunkResult]:
    """Write this run's chunks (the last partition also writes every part past it) and their manifests,
    then publish them.

    The other chunks and manifests are fetched first: ``publish_dir`` mirrors the whole directory (it would
    delete remote chunks the working copy lacks), and the checks look at every chunk."""
    data_root = layout.data_root
    data_root.fetch_dir(layout.chunks_dir)
    data_root.fetch_dir(layout.chunk_manifests)
    wanted = vflan_core.chunks_for_partitions(plan, [int(k) for k in run])
    removed = _remove_stale_tail(layout, plan, wanted)
    spill = layout.spill(run.context.run.run_id)
    try:
        results = vflan_core.build_chunks(plan, layout.per_file, wanted, layout.chunks_dir, layout.chunk_manifests,
                                          spill)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    data_root.publish_dir(layout.chunks_dir)
    data_root.publish(*(layout.chunk_manifest(r.chunk) for r in results))
    run.log.info("wrote %d chunks (%d records) of plan %s; removed %d stale tail files", len(results),
                 sum(r.count for r in results), plan.fingerprint, removed)
    return results


def _record_partitions(run: ShardedRun, plan: vflan_core.ShufflePlan, results: list[vflan_core.ChunkResult]) -> None:
    """Per-partition metadata; parts past the last partition are counted on it."""
    by_key: dict[str, list[vflan_core.ChunkResult]] = {}
    for r in results:
        by_key.setdefault(CHUNK_KEYS[vflan_core.partition_of(r.chunk)], []).append(r)
    for key, rs in by_key.items():
        sources: Counter = Counter()
        for r in rs:
            sources.update(r.sources)
        records, images = sum(r.count for r in rs), sum(r.images for r in rs)
        run.record(key, {"records": records, "images": images, "parts": len(rs), "plan_fingerprint": plan.fingerprint,
                         "by_source": dg.MetadataValue.json(dict(sorted(sources.items())))},
                   records=records, images=images)


def _check_record_schema(findings: Findings, results: list[vflan_core.ChunkResult]) -> None:
    """Every record written in this run."""
    name = checks.RECORD_SCHEMA.name
    for r in results:
        findings.expect(name, vflan_core.chunk_stem(r.chunk), r.n_problems == 0,
                        f"{r.n_problems} problem(s): {'; '.join(r.problems[:3])}")
    findings.add_metadata(name, problems=sum(r.n_problems for r in results),
                          examples=_examples_md([p for r in results for p in r.problems]))


def _check_counts(findings: Findings, layout: VflanLayout, plan: vflan_core.ShufflePlan, built_with: dict) -> bool:
    """Every chunk on disk against the current plan. Returns True when the only failures are absent chunks
    (a partial backfill: a warning, not an error)."""
    name = checks.COUNTS.name
    on_disk = {c: layout.chunk_count(c).exists() for c in range(plan.n_chunks)}
    present = [c for c, there in on_disk.items() if there]
    missing = [c for c, there in on_disk.items() if not there]
    tally = Counter()
    for c in present:  # first, so stale and wrong chunks lead the result's description
        n = read_count(layout.chunk_count(c))
        tally["on_disk"] += n
        why = []
        if built_with[c] != plan.fingerprint:
            tally["stale"] += 1
            why.append(f"built with plan {built_with[c]}, current is {plan.fingerprint}")
        if n != plan.sizes[c]:
            tally["wrong"] += 1
            why.append(f".count says {n}, the plan {plan.sizes[c]}")
        findings.expect(name, vflan_core.chunk_stem(c), not why, "; ".join(why))
    for c in missing:
        findings.fail(name, vflan_core.chunk_stem(c), "missing")
    findings.add_metadata(name, records_on_disk=tally["on_disk"], expected_total=plan.in_chunks,
                          chunks_missing=len(missing), chunks_stale=tally["stale"],
                          chunks_wrong_count=tally["wrong"], empty_chunks_planned=plan.sizes.count(0))
    return bool(missing) and not tally["stale"] and not tally["wrong"]


def _check_duplicates(findings: Findings, layout: VflanLayout, plan: vflan_core.ShufflePlan, built_with: dict,
                      thresholds: VflanChunksChecks) -> None:
    """Over every chunk built from the current plan, read from the chunk manifests."""
    current = [c for c, fp in built_with.items() if fp == plan.fingerprint]
    dups = vflan_core.duplicate_report(layout.chunk_manifests, current)
    fraction = dups.duplicate_records / dups.records if dups.records else 0.0
    findings.bound(checks.DUPLICATES.name, f"{dups.chunks_read} chunks", fraction, thresholds.max_duplicate_fraction,
                   at_least=False, what="share of identical records")
    findings.add_metadata(
        checks.DUPLICATES.name, records_checked=dups.records, duplicate_pairs=dups.duplicate_pairs,
        duplicate_records=dups.duplicate_records, duplicate_record_fraction=round(fraction, 4),
        duplicate_pairs_by_source=dg.MetadataValue.json(dups.by_source),
    )


def _check_loader_contract(findings: Findings, layout: VflanLayout, plan: vflan_core.ShufflePlan,
                           results: list[vflan_core.ChunkResult]) -> None:
    """The directory as VILA's loader lists it, and this run's pickles read back from disk."""
    name, out_dir = checks.LOADER_CONTRACT.name, layout.chunks_dir
    problems = validate_shard_dir(out_dir, check_lengths=False)
    planned = {vflan_core.chunk_stem(c) for c in range(plan.n_chunks)}
    problems += [f"{out_dir}: unexpected shard {s!r}" for s in sorted({s.stem for s in loader_shards(out_dir)} - planned)]
    findings.expect(name, out_dir.name, not problems, f"{len(problems)} problem(s): {'; '.join(problems[:3])}")
    for r in results:
        with open(r.pkl, "rb") as fh:
            n = len(pickle.load(fh))
        count = read_count(layout.chunk_count(r.chunk))
        findings.expect(name, r.pkl.stem, n == count, f"holds {n} records but its .count says {count}")
    findings.add_metadata(name, problems=_examples_md(problems))


def _with_counts_outcome(results: list[dg.AssetCheckResult], only_missing: bool, empty: int) -> list[dg.AssetCheckResult]:
    """The counts result as the check declares it, except that a partial backfill is a warning, and a
    note when the plan has empty chunks (VILA's sharded loader gives a rank with only empty chunks no data)."""
    out = []
    for r in results:
        if r.check_name == checks.COUNTS.name:
            note = f"; {empty} planned chunk(s) are empty: a rank of VILA's sharded loader may get no data" if empty else ""
            r = dg.AssetCheckResult(
                check_name=r.check_name, passed=r.passed, metadata=r.metadata, description=(r.description or "") + note,
                severity=dg.AssetCheckSeverity.WARN if only_missing else r.severity,
            )
        out.append(r)
    return out


def _check_world_size(findings: Findings, plan: vflan_core.ShufflePlan, world_size: int) -> None:
    """Records VILA's sharded loader reads at ``world_size`` from the plan's parts, against every record: the
    split's dropped remainder plus what the loader's per-rank cut leaves unread (curated: none)."""
    name = checks.TRAIN_WORLD_SIZE.name
    usable = usable_records(plan.sizes, world_size)
    lost = plan.dropped + usable.lost  # slots never read; padding repeats are read last, so lost first
    findings.expect(name, f"world size {world_size}", lost == 0,
                    f"{lost} of {plan.total} records unusable ({plan.dropped} dropped by the split, "
                    f"{usable.lost} by the loader's per-rank cut over {plan.n_chunks} parts)")
    findings.add_metadata(name, world_size=world_size, total_records=plan.total, usable_records=max(0, plan.total - lost),
                          lost=lost, dropped_by_split=plan.dropped, slots_read=usable.usable, padded=plan.padded,
                          parts=plan.n_chunks, parts_read=usable.shards_read,
                          usable_share=round(max(0, plan.total - lost) / plan.total, 4) if plan.total else 1.0)


def _chunks_metadata(layout: VflanLayout, plan: vflan_core.ShufflePlan, results: list[vflan_core.ChunkResult],
                     seed: int, data_policy: DataPolicy) -> dict:
    by_source: Counter = Counter()
    for r in results:
        by_source.update(r.sources)
    most = max(by_source.values(), default=0)
    sizes = [r.count for r in results]
    url = layout.data_root.url
    return {
        "policy": data_policy.policy.value,
        "train_world_size": data_policy.train_world_size,
        "chunk_size_min": min(sizes, default=0),
        "chunk_size_max": max(sizes, default=0),
        "parts_planned": plan.n_chunks,
        "total_records": plan.total,
        "total_planned": plan.in_chunks,
        "dropped_by_split": plan.dropped,
        "padded": plan.padded,
        "plan_fingerprint": plan.fingerprint,
        "seed": seed,
        "by_source": md_table(("source", "records", ""), [(s, n, bar(n, most)) for s, n in sorted(by_source.items())]),
        "path": dg.MetadataValue.path(url(layout.chunks_dir)),
        "plan_index": dg.MetadataValue.path(url(layout.shuffle_plan)),
    }


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "pickle"},
    partitions_def=vflan_chunk_partitions,
    backfill_policy=VFLAN_BACKFILL,
    deps=[flan_1m, m3it_tasks],
    description="FLAN + M3IT shuffled into VILA's vflan registry directory (part-%05d .pkl + .count); vila: "
                "split_vflan.py's shuffle and parts, curated: a seeded shuffle laid out for train_world_size.",
    check_specs=[c.spec("vflan_chunks") for c in checks.CHUNK_CHECKS],
)
def vflan_chunks(context: dg.AssetExecutionContext, config: VflanChunksConfig, data_root: DataRoot,
                 data_policy: DataPolicy) -> dg.MaterializeResult:
    run = ShardedRun(context, checks.CHUNK_CHECKS)
    layout = VflanLayout(data_root)
    plan = _shuffle_plan(layout, config.seed, data_policy)
    results = _build(run, layout, plan)
    _record_partitions(run, plan, results)
    built_with = vflan_core.chunk_fingerprints(layout.chunk_manifests, range(plan.n_chunks))
    _check_record_schema(run.findings, results)
    only_missing = _check_counts(run.findings, layout, plan, built_with)
    _check_duplicates(run.findings, layout, plan, built_with, config.checks)
    _check_loader_contract(run.findings, layout, plan, results)
    _check_world_size(run.findings, plan, data_policy.train_world_size)
    result = run.result(_chunks_metadata(layout, plan, results, config.seed, data_policy))
    return dg.MaterializeResult(metadata=result.metadata,
                                check_results=_with_counts_outcome(result.check_results, only_missing, plan.sizes.count(0)))
