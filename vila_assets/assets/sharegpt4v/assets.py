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

import dagster as dg

from vila_assets.assets.llava import fail_on_record_error, json_output_checks
from vila_assets.core.llava_json import (
    check_records,
    iter_json_array,
    presence_markdown,
    sha256_file,
    validate_file,
    write_json_array,
)
from vila_assets.core.sharegpt4v import RULES, FilterReport, FilterRules, SampleFilter, detail_key, filter_records, recombine_sft
from vila_assets.core.vila_format import REGISTRY, RecordError, registry_path, write_json
from vila_assets.demo_plan import DemoStep
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot

FAMILY = "sharegpt4v"
CAPTIONS_REPO = "Lin-Chen/ShareGPT4V"
MIT_REPO = "mit-han-lab/ShareGPT4V"
CAP100K = "sharegpt4v_instruct_gpt4-vision_cap100k.json"
PT1246K = "share-captioner_coco_lcs_sam_1246k_1107.json"
DETAIL23K = "raw_data/llava_detail_23k.json"
# VILA 1.5's registry path for the filtered PT captions (not in vila_format.REGISTRY, which is v1)
PT_FILTERED = "ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json"
_DEFAULT_RULES = FilterRules()


class ShareGPT4VConfig(dg.Config):
    revision: str = "main"  # of Lin-Chen/ShareGPT4V (captions)
    mit_revision: str = "main"  # of mit-han-lab/ShareGPT4V (llava_detail_23k)
    strict: bool = True  # a malformed record fails the run (file + record id); False: count it as invalid_record
    include_pretrain: bool = True  # also filter the 1246k Share-Captioner PT set
    sam_id_pattern: str = _DEFAULT_RULES.sam_id_pattern
    max_sentence_repeats: int = _DEFAULT_RULES.max_sentence_repeats
    min_sentence_chars: int = _DEFAULT_RULES.min_sentence_chars
    ngram_size: int = _DEFAULT_RULES.ngram_size
    min_ngrams: int = _DEFAULT_RULES.min_ngrams
    max_ngram_repeat_ratio: float = _DEFAULT_RULES.max_ngram_repeat_ratio
    min_yield: float = 0.8  # check: VILA kept ~96% (cap100k) and ~97.5% (PT); far less means a broken rule

    def rules(self) -> FilterRules:
        return FilterRules(**{k: getattr(self, k) for k in asdict(_DEFAULT_RULES)})


def _rule_table(reports: list[FilterReport]) -> dg.MetadataValue:
    names = [r.source.rsplit("/", 1)[-1] for r in reports]
    lines = ["| rule | " + " | ".join(names) + " |", "|---|" + "---:|" * len(reports)]
    lines.append("| records in | " + " | ".join(str(r.records_in) for r in reports) + " |")
    for rule in RULES:
        lines.append(f"| removed: {rule} | " + " | ".join(str(r.removed.get(rule, 0)) for r in reports) + " |")
    lines.append("| kept | " + " | ".join(f"{r.records_out} ({r.yield_:.1%})" for r in reports) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _filter_to(src, out, rules: FilterRules, strict: bool) -> FilterReport:
    records, report = filter_records(src, iter_json_array(src), rules, strict=strict)
    try:
        write_json_array(out, records)
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    return report


@dg.asset(
    group_name=FAMILY,
    kinds={"python", "json"},
    deps=["llava_mix665k"],
    description="ShareGPT4V without SAM-id leaks and repetitive responses; SFT file = mix665k - detail23k + cap100k.",
)
def sharegpt4v_filtered(
    context: dg.AssetExecutionContext, config: ShareGPT4VConfig, hub: HubClient, data_root: DataRoot
) -> dg.MaterializeResult:
    rules = config.rules()
    sha = hub.resolve_revision(CAPTIONS_REPO, config.revision)
    mit_sha = hub.resolve_revision(MIT_REPO, config.mit_revision)

    detail_src = hub.download(MIT_REPO, DETAIL23K, mit_sha)
    try:
        detail_keys = {detail_key(r) for r in check_records(detail_src, iter_json_array(detail_src), strict=True)}
    except RecordError as exc:
        raise fail_on_record_error(exc) from None
    cap_src = hub.download(CAPTIONS_REPO, CAP100K, sha)
    cap_out = data_root.staging(FAMILY, f"filter-{CAP100K}")
    reports = [_filter_to(cap_src, cap_out, rules, config.strict)]  # staging only: nothing published yet
    mix665k = registry_path("llava_1_5_sft", data_root.path())
    if not mix665k.is_file():
        raise dg.Failure(f"{mix665k} is missing: materialize llava_mix665k first")
    if config.include_pretrain:
        pt_src = hub.download(CAPTIONS_REPO, PT1246K, sha)
        reports.append(_filter_to(pt_src, data_root.playground(PT_FILTERED), rules, config.strict))

    sft_out = registry_path("sharegpt4v_sft", data_root.path())
    records, rec = recombine_sft(iter_json_array(mix665k), detail_keys, iter_json_array(cap_out))
    n = write_json_array(sft_out, records)

    image_folder = data_root.path(REGISTRY["sharegpt4v_sft"].image_path.removeprefix("./"))
    sft_report = validate_file(sft_out, strict=True, image_folder=image_folder)
    write_json(
        data_root.reports(FAMILY, "filter_report.json"),
        {
            "rules": rules.describe(),
            "revision_sha": sha,
            "mit_revision_sha": mit_sha,
            "files": [asdict(r) for r in reports],
            "recombination": asdict(rec),
        },
    )
    cap = reports[0]
    md = {
        "revision_sha": sha,
        "mit_revision_sha": mit_sha,
        "records": n,
        "cap100k_in": cap.records_in,
        "cap100k_kept": cap.records_out,
        "cap100k_yield": round(cap.yield_, 4),
        **{f"cap100k_removed_{k}": v for k, v in cap.removed.items()},
        "detail23k_removed": rec.detail_removed,
        "detail23k_unmatched": rec.detail_unmatched,
        "recombine_duplicates_removed": rec.duplicates_removed,
        "filter_rules": _rule_table(reports),
        "rules": dg.MetadataValue.json(rules.describe()),
        "yield_floor": config.min_yield,
        "image_roots": presence_markdown(sft_report.presence),
        "images_missing": sft_report.images_missing,
        "path": dg.MetadataValue.path(str(sft_out)),
        "sha256": sha256_file(sft_out),
    }
    if config.include_pretrain:
        pt = reports[1]
        md.update({
            "pretrain_in": pt.records_in,
            "pretrain_kept": pt.records_out,
            "pretrain_yield": round(pt.yield_, 4),
            **{f"pretrain_removed_{k}": v for k, v in pt.removed.items()},
            "pretrain_path": dg.MetadataValue.path(str(data_root.playground(PT_FILTERED))),
        })
    return dg.MaterializeResult(metadata=md)


sft_checks = json_output_checks("sharegpt4v_filtered", "sharegpt4v_sft", images_must_exist=False)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec("no_rule_violations", asset="sharegpt4v_filtered",
                          description="the published files hold nothing the filter rules would remove"),
        dg.AssetCheckSpec("yield_per_rule", asset="sharegpt4v_filtered",
                          description="each filtered file keeps at least min_yield of its input"),
        dg.AssetCheckSpec("recombination", asset="sharegpt4v_filtered",
                          description="every detail-23k sample was found in mix665k and removed"),
    ],
)
def sharegpt4v_filter_checks(context: dg.AssetCheckExecutionContext, data_root: DataRoot):
    ev = context.instance.get_latest_materialization_event(dg.AssetKey("sharegpt4v_filtered"))
    md = {k: getattr(v, "value", v) for k, v in ev.asset_materialization.metadata.items()} if ev else {}
    rules = FilterRules(**md["rules"]) if "rules" in md else FilterRules()  # the rules that run used
    violations: dict[str, int] = {}
    files = [data_root.staging(FAMILY, f"filter-{CAP100K}"), registry_path("sharegpt4v_sft", data_root.path())]
    if "pretrain_in" in md:
        files.append(data_root.playground(PT_FILTERED))
    for path in files:
        sf = SampleFilter(rules)
        for rec in iter_json_array(path):
            why = sf.reason(rec)
            if why:
                violations[f"{path.name}:{why}"] = violations.get(f"{path.name}:{why}", 0) + 1
    yield dg.AssetCheckResult(check_name="no_rule_violations", asset_key="sharegpt4v_filtered",
                              passed=not violations, metadata={"violations": dg.MetadataValue.json(violations)})
    min_yield = md.get("yield_floor", 0.8)
    yields = {k: md[k] for k in ("cap100k_yield", "pretrain_yield") if k in md}
    yield dg.AssetCheckResult(
        check_name="yield_per_rule", asset_key="sharegpt4v_filtered",
        passed=bool(yields) and all(v >= min_yield for v in yields.values()),
        metadata={**yields, **{k: v for k, v in md.items() if "_removed_" in k}, "yield_floor": min_yield},
    )
    yield dg.AssetCheckResult(
        check_name="recombination", asset_key="sharegpt4v_filtered",
        passed=md.get("detail23k_unmatched", 1) == 0 and md.get("detail23k_removed", 0) > 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"detail23k_removed": md.get("detail23k_removed", -1), "detail23k_unmatched": md.get("detail23k_unmatched", -1)},
    )


defs = dg.Definitions(assets=[sharegpt4v_filtered], asset_checks=[sft_checks, sharegpt4v_filter_checks])


def demo_steps(resources: dict, scale: str) -> list[DemoStep]:
    return [DemoStep("sharegpt4v: filter + recombine", ("sharegpt4v_filtered",), order=12)]
