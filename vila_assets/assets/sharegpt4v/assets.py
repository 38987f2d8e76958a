"""ShareGPT4V under the run's data policy (``vila_assets.core.sharegpt4v`` explains both).

``sharegpt4v_filtered`` publishes, under either policy:
- ``playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json`` (registry ``sharegpt4v_sft``);
- ``playground/data/ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json`` (VILA 1.5's
  ``sharegpt4v_pretrain``), unless ``include_pretrain`` is off;
- ``reports/sharegpt4v/filter_report.json``.

``vila``: ``mit-han-lab/ShareGPT4V``'s published files, byte for byte (the PT file is
``filter-share-captioner_...`` there, ``jason-filter-share-captioner_...`` in VILA's registry).
``curated``: the raw captions filtered by the written rules; the SFT file = the published mix665k minus the
LLaVA detail-23k samples plus the filtered GPT-4V captions (cap100k), which stay alone in
``staging/sharegpt4v/``. Counts per rule go to metadata and the report.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from vila_assets.assets._checks import Findings
from vila_assets.assets.llava.checks import record_json_output_findings
from vila_assets.assets.llava.layout import LlavaLayout
from vila_assets.assets.llava.metadata import presence_table
from vila_assets.assets.sharegpt4v.checks import (
    CHECKS,
    record_detail_absent,
    record_recombination,
    record_rule_violations,
    record_unchanged,
    record_yields,
)
from vila_assets.assets.sharegpt4v.config import ShareGPT4VConfig
from vila_assets.assets.sharegpt4v.layout import FAMILY, ShareGPT4VLayout
from vila_assets.assets.sharegpt4v.metadata import rule_table
from vila_assets.assets.sharegpt4v.sources import CAP100K, DETAIL23K, MIT_PT, MIT_SFT, PT1246K, ShareGPT4VSource
from vila_assets.core.hub import HubError
from vila_assets.core.llava_json import (
    JsonArrayError,
    ValidationReport,
    check_records,
    iter_json_array,
    sha256_file,
    write_json_array,
)
from vila_assets.core.sharegpt4v import (
    CopyReport,
    FilterReport,
    FilterRules,
    RecombineReport,
    copy_published,
    detail_key,
    filter_records,
    recombine_sft,
)
from vila_assets.core.source_tree import SourceError, SourceTree
from vila_assets.core.vila_format import RecordError, write_json
from vila_assets.resources.hub import HubClient
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import DataRoot

MIX665K_ASSET = "llava_mix665k"


# --- reading sources ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def reading(tree: SourceTree, relpath: str) -> Iterator[None]:
    """Turns any failure to read ``relpath`` into a run failure naming the source file (and, from the
    reader's message, the record index)."""
    try:
        yield
    except (RecordError, JsonArrayError, SourceError, HubError) as exc:
        where = tree.describe(relpath)
        raise dg.Failure(description=f"cannot read {where}: {exc}",
                         metadata={"file": where, "error": str(exc)}) from None


def fetch(tree: SourceTree, relpath: str) -> Path:
    with reading(tree, relpath):
        return tree.fetch(relpath)


def source_metadata(prefix: str, tree: SourceTree) -> dict:
    """Where a source was read from; its commit sha where it has one (hub repos)."""
    md = {f"{prefix}source": tree.describe()}
    if tree.revision is not None:
        md[f"{prefix}revision_sha"] = tree.revision
    return md


def _detail_keys(mit: SourceTree) -> set:
    """The keys of LLaVA's detail-23k samples (``core.sharegpt4v.detail_key``)."""
    path = fetch(mit, DETAIL23K)
    with reading(mit, DETAIL23K):
        return {detail_key(r) for r in check_records(path, iter_json_array(path), strict=True)}


# --- vila: VILA's published files --------------------------------------------------------------------------


def _copy(mit: SourceTree, relpath: str, dest: Path, observe: Callable[[dict], None] | None = None) -> CopyReport:
    src = fetch(mit, relpath)
    with reading(mit, relpath):
        return copy_published(src, dest, source=mit.describe(relpath), observe=observe)


def _vila_metadata(mit: SourceTree, files: dict, copies: dict[str, CopyReport], found: list[str],
                   sft: ValidationReport, layout: ShareGPT4VLayout) -> dict:
    url, root = layout.data_root.url, layout.data_root
    md = {"policy": "vila", **source_metadata("mit_", mit), "records": copies["sft"].records,
          "sha256": copies["sft"].sha256, "path": dg.MetadataValue.path(url(layout.sft_json)),
          # the PT file's hub name differs from VILA's registry name (jason-filter-...)
          "published_as": dg.MetadataValue.json({rel: root.relpath(dest) for rel, dest in files.values()}),
          "detail23k_in_sft": len(found), "image_roots": presence_table(sft.presence),
          "images_missing": sft.images_missing}
    if "pretrain" in copies:
        md.update(pretrain_records=copies["pretrain"].records,
                  pretrain_path=dg.MetadataValue.path(url(layout.pretrain_filtered)))
    return md


def _publish_vila(config: ShareGPT4VConfig, mit: SourceTree, layout: ShareGPT4VLayout) -> dg.MaterializeResult:
    detail_keys = _detail_keys(mit)
    found: list[str] = []  # ids of detail-23k samples still in VILA's SFT file

    def note_detail(rec: dict) -> None:
        if detail_key(rec) in detail_keys:
            found.append(str(rec["id"]))

    files = {"sft": (MIT_SFT, layout.sft_json)}
    if config.include_pretrain:
        files["pretrain"] = (MIT_PT, layout.pretrain_filtered)
    copies = {k: _copy(mit, rel, dest, note_detail if k == "sft" else None) for k, (rel, dest) in files.items()}
    write_json(layout.filter_report, {"policy": "vila", **source_metadata("mit_", mit),
                                      "files": {k: asdict(c) for k, c in copies.items()}, "detail23k_in_sft": found})
    outputs = [dest for _, dest in files.values()]
    layout.data_root.publish(*outputs, layout.filter_report)

    findings = Findings(CHECKS)
    sft = record_json_output_findings(findings, layout.sft_json, layout.sft_images, copies["sft"].records)
    record_rule_violations(findings, outputs, config.rules(), enforce=False)
    record_unchanged(findings, {k: (fetch(mit, rel), dest) for k, (rel, dest) in files.items()})
    record_detail_absent(findings, found, len(detail_keys))
    return dg.MaterializeResult(metadata=_vila_metadata(mit, files, copies, found, sft, layout),
                                check_results=findings.results())


# --- curated: our filter, then the recombination -----------------------------------------------------------


def _filter_to(tree: SourceTree, relpath: str, out: Path, rules: FilterRules, strict: bool) -> FilterReport:
    src = fetch(tree, relpath)
    records, report = filter_records(src, iter_json_array(src), rules, strict=strict)
    with reading(tree, relpath):
        write_json_array(out, records)
    return report


def _fetch_mix665k(data_root: DataRoot) -> Path:
    """The published mix665k, in the working copy."""
    path = data_root.fetch(LlavaLayout(data_root).mix665k_json)
    if not path.is_file():
        raise dg.Failure(f"{path} is missing: materialize {MIX665K_ASSET} first")
    return path


def _curated_metadata(sources: dict, n: int, reports: dict[str, FilterReport], rec: RecombineReport,
                      rules: FilterRules, sft: ValidationReport, layout: ShareGPT4VLayout) -> dict:
    url = layout.data_root.url
    md = {"policy": "curated", **sources, "records": n}
    for prefix, report in reports.items():
        md.update({f"{prefix}_in": report.records_in, f"{prefix}_kept": report.records_out,
                   f"{prefix}_yield": round(report.yield_, 4),
                   **{f"{prefix}_removed_{k}": v for k, v in report.removed.items()}})
    md.update({
        "detail23k_removed": rec.detail_removed,
        "detail23k_unmatched": rec.detail_unmatched,
        "recombine_duplicates_removed": rec.duplicates_removed,
        "filter_rules": rule_table(list(reports.values())),
        "rules": dg.MetadataValue.json(rules.describe()),
        "image_roots": presence_table(sft.presence),
        "images_missing": sft.images_missing,
        "path": dg.MetadataValue.path(url(layout.sft_json)),
        "sha256": sha256_file(layout.sft_json),
    })
    if "pretrain" in reports:
        md["pretrain_path"] = dg.MetadataValue.path(url(layout.pretrain_filtered))
    return md


def _filter_curated(config: ShareGPT4VConfig, captions: SourceTree, mit: SourceTree,
                    layout: ShareGPT4VLayout) -> dg.MaterializeResult:
    rules, data_root = config.rules(), layout.data_root
    detail_keys = _detail_keys(mit)
    # cap100k first, into staging: malformed captions fail the run before anything is published
    reports = {"cap100k": _filter_to(captions, CAP100K, layout.cap100k_filtered, rules, config.strict)}
    mix665k = _fetch_mix665k(data_root)
    if config.include_pretrain:
        reports["pretrain"] = _filter_to(captions, PT1246K, layout.pretrain_filtered, rules, config.strict)
    records, rec = recombine_sft(iter_json_array(mix665k), detail_keys, iter_json_array(layout.cap100k_filtered))
    n = write_json_array(layout.sft_json, records)
    sources = {**source_metadata("", captions), **source_metadata("mit_", mit)}
    write_json(layout.filter_report, {"policy": "curated", "rules": rules.describe(), **sources,
                                      "files": [asdict(r) for r in reports.values()], "recombination": asdict(rec)})
    outputs = [layout.cap100k_filtered, layout.sft_json] + ([layout.pretrain_filtered] if "pretrain" in reports else [])
    data_root.publish(*outputs, layout.filter_report)

    findings = Findings(CHECKS)
    sft = record_json_output_findings(findings, layout.sft_json, layout.sft_images, n)
    record_rule_violations(findings, outputs, rules)
    record_yields(findings, reports, config.checks.min_yield)
    record_recombination(findings, rec)
    return dg.MaterializeResult(metadata=_curated_metadata(sources, n, reports, rec, rules, sft, layout),
                                check_results=findings.results())


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    deps=[MIX665K_ASSET],
    check_specs=[c.spec("sharegpt4v_filtered") for c in CHECKS],
    description="ShareGPT4V SFT + PT files: VILA's published ones (vila) or the raw captions without SAM-id "
                "leaks and repetitive responses, SFT = mix665k - detail23k + cap100k (curated).",
)
def sharegpt4v_filtered(
    context: dg.AssetExecutionContext, config: ShareGPT4VConfig, hub: HubClient,
    sharegpt4v_source: ShareGPT4VSource, data_root: DataRoot, data_policy: DataPolicy,
) -> dg.MaterializeResult:
    layout = ShareGPT4VLayout(data_root)
    cache = data_root.cache("sources")
    mit = sharegpt4v_source.mit(hub, cache)
    if data_policy.is_vila:
        return _publish_vila(config, mit, layout)
    return _filter_curated(config, sharegpt4v_source.captions(hub, cache), mit, layout)
