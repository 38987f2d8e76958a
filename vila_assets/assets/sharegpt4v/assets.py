"""ShareGPT4V filtered (rules in ``vila_assets.core.sharegpt4v``) and recombined into VILA's SFT file.

``sharegpt4v_filtered`` publishes:
- ``playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json`` (registry ``sharegpt4v_sft``): the
  published mix665k minus the LLaVA detail-23k samples, plus the filtered GPT-4V captions (cap100k);
- ``playground/data/ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json`` (VILA 1.5's
  ``sharegpt4v_pretrain``): the filtered Share-Captioner PT captions.
The filtered cap100k alone is kept in ``staging/sharegpt4v/``; counts per rule go to metadata and
``reports/sharegpt4v/filter_report.json``.
"""


from dataclasses import asdict
from pathlib import Path

import dagster as dg

from vila_assets.assets._checks import Findings
from vila_assets.assets.llava.assets import fail_on_record_error
from vila_assets.assets.llava.checks import record_json_output_findings
from vila_assets.assets.llava.layout import LlavaLayout
from vila_assets.assets.llava.metadata import presence_table
from vila_assets.assets.sharegpt4v.checks import CHECKS, record_recombination, record_rule_violations, record_yields
from vila_assets.assets.sharegpt4v.config import ShareGPT4VConfig
from vila_assets.assets.sharegpt4v.layout import FAMILY, ShareGPT4VLayout
from vila_assets.assets.sharegpt4v.metadata import rule_table
from vila_assets.assets.sharegpt4v.sources import CAP100K, DETAIL23K, PT1246K, ShareGPT4VSource
from vila_assets.core.llava_json import ValidationReport, check_records, iter_json_array, sha256_file, write_json_array
from vila_assets.core.sharegpt4v import FilterReport, FilterRules, RecombineReport, detail_key, filter_records, recombine_sft
from vila_assets.core.vila_format import RecordError, write_json
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot

MIX665K_ASSET = "llava_mix665k"


def _detail_keys(hub: HubClient, source: ShareGPT4VSource) -> tuple[set, str]:
    """The keys of LLaVA's detail-23k samples (``core.sharegpt4v.detail_key``), and the revision read."""
    mit_sha = hub.resolve_revision(source.mit_repo, source.mit_revision)
    detail_src = hub.download(source.mit_repo, DETAIL23K, mit_sha)
    try:
        return {detail_key(r) for r in check_records(detail_src, iter_json_array(detail_src), strict=True)}, mit_sha
    except RecordError as exc:
        raise fail_on_record_error(exc) from None


def _filter_to(src: Path, out: Path, rules: FilterRules, strict: bool) -> FilterReport:
    records, report = filter_records(src, iter_json_array(src), rules, strict=strict)
    try:
        write_json_array(out, records)
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    return report


def _fetch_mix665k(data_root: DataRoot) -> Path:
    """The published mix665k, in the working copy."""
    path = data_root.fetch(LlavaLayout(data_root).mix665k_json)
    if not path.is_file():
        raise dg.Failure(f"{path} is missing: materialize {MIX665K_ASSET} first")
    return path


def _metadata(sha: str, mit_sha: str, n: int, reports: dict[str, FilterReport], rec: RecombineReport,
              rules: FilterRules, sft: ValidationReport, layout: ShareGPT4VLayout) -> dict:
    url = layout.data_root.url
    md = {"revision_sha": sha, "mit_revision_sha": mit_sha, "records": n}
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


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    deps=[MIX665K_ASSET],
    check_specs=[c.spec("sharegpt4v_filtered") for c in CHECKS],
    description="ShareGPT4V without SAM-id leaks and repetitive responses; SFT file = mix665k - detail23k + cap100k.",
)
def sharegpt4v_filtered(
    context: dg.AssetExecutionContext, config: ShareGPT4VConfig, hub: HubClient,
    sharegpt4v_source: ShareGPT4VSource, data_root: DataRoot,
) -> dg.MaterializeResult:
    layout = ShareGPT4VLayout(data_root)
    rules, repo = config.rules(), sharegpt4v_source.captions_repo
    sha = hub.resolve_revision(repo, sharegpt4v_source.captions_revision)
    detail_keys, mit_sha = _detail_keys(hub, sharegpt4v_source)
    # cap100k first, into staging: malformed captions fail the run before anything is published
    reports = {"cap100k": _filter_to(hub.download(repo, CAP100K, sha), layout.cap100k_filtered, rules, config.strict)}
    mix665k = _fetch_mix665k(data_root)
    if config.include_pretrain:
        reports["pretrain"] = _filter_to(hub.download(repo, PT1246K, sha), layout.pretrain_filtered, rules, config.strict)
    records, rec = recombine_sft(iter_json_array(mix665k), detail_keys, iter_json_array(layout.cap100k_filtered))
    n = write_json_array(layout.sft_json, records)
    write_json(layout.filter_report, {"rules": rules.describe(), "revision_sha": sha, "mit_revision_sha": mit_sha,
                                      "files": [asdict(r) for r in reports.values()], "recombination": asdict(rec)})
    outputs = [layout.cap100k_filtered, layout.sft_json] + ([layout.pretrain_filtered] if "pretrain" in reports else [])
    data_root.publish(*outputs, layout.filter_report)

    findings = Findings(CHECKS)
    sft = record_json_output_findings(findings, layout.sft_json, layout.sft_images, n)
    record_rule_violations(findings, outputs, rules)
    record_yields(findings, reports, config.checks.min_yield)
    record_recombination(findings, rec)
    return dg.MaterializeResult(metadata=_metadata(sha, mit_sha, n, reports, rec, rules, sft, layout),
                                check_results=findings.results())
