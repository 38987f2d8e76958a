"""ShareGPT4V: each written rule removes what it should and spares the near misses; the asset removes
exactly the planted samples, recombines mix665k - detail23k + cap100k, its outputs load like VILA's, and its
checks read the published files back against this run's rules and thresholds."""

import json

import dagster as dg
import pytest

from tests.dagster_runs import check_results, checks_passed, defs_for, failure_text, materializations, op_config, run
from vila_assets.assets._checks import Findings
from vila_assets.assets.sharegpt4v.checks import CHECKS, NO_RULE_VIOLATIONS, YIELD_PER_RULE, record_rule_violations, record_yields
from vila_assets.assets.sharegpt4v.config import ShareGPT4VChecks, ShareGPT4VConfig
from vila_assets.core.llava_json import check_records
from vila_assets.core.sharegpt4v import (
    FilterReport,
    FilterRules,
    SampleFilter,
    detail_key,
    ngram_repeat_ratio,
    phrase_loop,
    recombine_sft,
    sentence_repeats,
)
from vila_assets.core.vila_format import registry_path, write_json
from vila_assets.sample_world.sources import llava as llava_world
from vila_assets.sample_world.sources import sharegpt4v as s4_world
from vila_assets.sample_world.world import SampleWorld

# the image roots are downstream (they fetch what these files reference): the LLaVA family tests them
ASSETS = ("llava_mix665k", "sharegpt4v_filtered")
PT_FILTERED = "ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json"


def rec(text, rid="x", image="coco/train2017/1.jpg", human="<image>\nDescribe."):
    return {"id": rid, "image": image, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": text}]}


NATURAL = ("The picture shows a red circle near the centre. Behind it lies a soft gradient. Lighting is even "
           "and calm. The edges of the circle are crisp and clearly separated from the backdrop.")


@pytest.mark.parametrize(
    "text, expected",
    [
        (NATURAL + " The file is sa_123456.jpg.", "sam_id_leak"),
        ("(sa_7) " + NATURAL, "sam_id_leak"),
        (NATURAL + " A tag reads visa_2024 and usa_7.", None),
        (NATURAL + " It uses an sa_ prefix without digits.", None),
        (NATURAL + " SA_12 in capitals is not a SAM name.", None),
        (NATURAL + " The red circle is in the middle of the image." * 3, "repeated_sentence"),
        (NATURAL + " The red circle is in the middle of the image." * 2, None),
        # too short for the sentence rule, but a loop all the same
        (NATURAL + " It is plain. It is plain. It is plain. It is plain.", "phrase_loop"),
        (NATURAL + " It is plain. It is plain.", None),
        ("The image shows " + "a red circle next to " * 12 + "a wall", "repeated_ngrams"),
        ("a red circle next to " * 2 + "a wall", None),  # too few n-grams to judge, said only twice
        # a short phrase looped without sentence breaks, inside a long natural caption
        (NATURAL + " Along the border runs the cat the cat the cat the cat", "phrase_loop"),
        (NATURAL + " the cat the cat the cat.", "phrase_loop"),
        (NATURAL + " Its label reads a red cara red cara red car.", "phrase_loop"),  # glued, no spaces
        (NATURAL + " Its label reads a red cara red car.", None),
        (NATURAL + " It is very very very small.", None),  # under loop_min_chars
        (NATURAL + " Hahahahahahahahahahahahahaha.", "phrase_loop"),
        (NATURAL, None),
    ],
)
def test_rules(text, expected):
    assert SampleFilter(FilterRules()).reason(rec(text)) == expected


def test_leak_in_a_human_turn_counts_and_image_path_does_not():
    f = SampleFilter(FilterRules())
    assert f.reason(rec(NATURAL, human="<image>\nDescribe sa_991.")) == "sam_id_leak"
    assert f.reason(rec(NATURAL, rid="sa_5", image="sam/images/sa_5.jpg")) is None


def test_thresholds_are_config():
    loop = NATURAL + " The red circle is in the middle of the image." * 3
    assert SampleFilter(FilterRules(max_sentence_repeats=3)).reason(rec(loop)) == "phrase_loop"  # back to back
    assert SampleFilter(FilterRules(max_sentence_repeats=3, loop_min_repeats=4)).reason(rec(loop)) is None
    assert sentence_repeats(loop, 12) == 3
    ratio, total = ngram_repeat_ratio("a b c d " * 10, 4)
    assert total == 37 and ratio == pytest.approx(1 - 4 / 37)
    glued = NATURAL + " Its label reads a red cara red cara red car."
    assert SampleFilter(FilterRules(loop_min_repeats=4)).reason(rec(glued)) is None
    assert SampleFilter(FilterRules(loop_min_chars=28)).reason(rec(glued)) is None  # 3 x "a red car" = 27
    assert SampleFilter(FilterRules(loop_max_phrase_chars=8)).reason(rec(glued)) is None


def test_phrase_loop_names_the_looped_phrase():
    assert phrase_loop("Text. The cat the cat the cat") == "the cat "
    assert phrase_loop("a red cara red cara red car") == "a red car"
    assert phrase_loop("a  red\ncar a red car   a red car!") == "a red car "  # whitespace collapsed
    assert phrase_loop("the cat the cat") is None
    assert phrase_loop("the cat the cat the cat the cat", min_repeats=5) is None


def test_duplicates_keep_the_first_and_ignore_ids():
    f = SampleFilter(FilterRules())
    out = list(f.apply([rec(NATURAL, "a"), rec(NATURAL, "b"), rec(NATURAL, "c", image="coco/train2017/2.jpg")]))
    assert [r["id"] for r in out] == ["a", "c"] and f.removed["duplicate_conversation"] == 1


def test_recombination_matches_detail_by_id_and_answers():
    detail = rec("A long detailed description.", "000001")
    same_image_other_task = rec("A short answer.", "000001")
    mix = [same_image_other_task, {**detail, "image": "coco/train2017/000001.jpg"}, rec("Other.", "000002")]
    keys = {detail_key({**detail, "image": "000001.jpg"})}
    out, report = recombine_sft(iter(mix), keys, iter([rec("GPT-4V caption.", "sa_1", "sam/images/sa_1.jpg")]))
    out = list(out)
    assert [r["conversations"][1]["value"] for r in out] == ["A short answer.", "Other.", "GPT-4V caption."]
    assert (report.detail_removed, report.detail_unmatched, report.captions_added, report.records_out) == (1, 0, 1, 3)


def test_min_yield_is_defined_once_as_a_check_threshold():
    assert ShareGPT4VConfig().checks.min_yield == ShareGPT4VChecks().min_yield == 0.8
    assert ShareGPT4VConfig().rules() == FilterRules()


def test_rule_violation_check_reads_the_files_with_the_runs_rules(tmp_path):
    loop = NATURAL + " The red circle is in the middle of the image." * 3
    clean = write_json(tmp_path / "clean.json", [rec(NATURAL, "a")])
    looping = write_json(tmp_path / "loop.json", [rec(NATURAL, "a"), rec(loop, "b"), rec(NATURAL + " sa_12.", "c")])
    findings = Findings(CHECKS)
    record_rule_violations(findings, [clean, looping], FilterRules())
    result = findings.result(NO_RULE_VIOLATIONS.name)
    assert not result.passed and set(result.metadata["failing_examples"].value) == {"loop.json"}
    assert result.metadata["violations"].value == {"loop.json:repeated_sentence": 1, "loop.json:sam_id_leak": 1}
    # under a looser rule the loop is allowed: the check judges by the rules the run used
    findings = Findings(CHECKS)
    record_rule_violations(findings, [looping], FilterRules(max_sentence_repeats=3, loop_min_repeats=4,
                                                            sam_id_pattern="never"))
    assert findings.result(NO_RULE_VIOLATIONS.name).passed
    # not enforced (the vila policy publishes VILA's files as they are): reported, passing
    findings = Findings(CHECKS)
    record_rule_violations(findings, [clean, looping], FilterRules(), enforce=False)
    result = findings.result(NO_RULE_VIOLATIONS.name)
    assert result.passed and result.metadata["enforced"].value is False
    assert result.metadata["violations"].value == {"loop.json:repeated_sentence": 1, "loop.json:sam_id_leak": 1}


def test_yield_check_bounds_every_filtered_file():
    reports = {"cap100k": FilterReport("cap", records_in=100, records_out=96),
               "pretrain": FilterReport("pt", records_in=100, records_out=70, removed={"sam_id_leak": 30})}
    findings = Findings(CHECKS)
    record_yields(findings, reports, min_yield=0.8)
    result = findings.result(YIELD_PER_RULE.name)
    assert not result.passed and set(result.metadata["failing_examples"].value) == {"pretrain"}
    assert result.metadata["worst_subject"].value == "pretrain" and result.metadata["pretrain_removed_sam_id_leak"].value == 30
    findings = Findings(CHECKS)
    record_yields(findings, reports, min_yield=0.7)
    assert findings.result(YIELD_PER_RULE.name).passed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The sample world's LLaVA and ShareGPT4V sources (all this family reads), shared by this module."""
    with SampleWorld(tmp_path_factory.mktemp("s4-world"), scale="test", clip=False,
                     families=["llava", "sharegpt4v"]) as w:
        yield w


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("s4") / "root"
    with dg.instance_for_test() as instance:
        yield root, run(defs_for(world, root), instance, ASSETS)


@pytest.mark.slow
def test_asset_removes_exactly_the_planted_samples(built, world):
    root, result = built
    assert result.success, failure_text(result)
    passed = checks_passed(result)
    assert {k for k in passed if k.startswith("sharegpt4v_filtered:")} == {f"sharegpt4v_filtered:{c.name}" for c in CHECKS}
    # every check passes but images_present: the image roots come after this asset (they fetch what it references)
    failing = {k for k, ok in passed.items() if not ok and k.startswith("sharegpt4v_filtered:")}
    assert failing == {"sharegpt4v_filtered:images_present"}, passed
    assert check_results(result)["sharegpt4v_filtered:images_present"].severity == dg.AssetCheckSeverity.WARN
    assert check_results(result)["sharegpt4v_filtered:recombination"].severity == dg.AssetCheckSeverity.WARN
    md = materializations(result)["sharegpt4v_filtered"]
    for prefix, gen in (("cap100k", s4_world.cap100k_records), ("pretrain", s4_world.pt_records)):
        records, answer = gen(world.ctx)
        for rule in ("sam_id_leak", "repeated_sentence", "repeated_ngrams", "phrase_loop", "duplicate_conversation"):
            assert md[f"{prefix}_removed_{rule}"] == sum(1 for r in answer.values() if r == rule), (prefix, rule)
        assert md[f"{prefix}_kept"] == len(records) - len(answer)
    pt = json.loads((root / "playground/data" / PT_FILTERED).read_text())
    records, answer = s4_world.pt_records(world.ctx)
    assert [r["id"] for r in pt] == [r["id"] for r in records if r["id"] not in answer]


@pytest.mark.slow
def test_sft_file_is_mix665k_minus_detail_plus_captions_and_loads(built, world):
    root, result = built
    md = materializations(result)["sharegpt4v_filtered"]
    mix = llava_world.mix665k_records(world.ctx)
    detail = llava_world.detail23k_records(world.ctx)
    caps, answer = s4_world.cap100k_records(world.ctx)
    path = registry_path("sharegpt4v_sft", root)
    assert path == root / "playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json"
    with open(path, encoding="utf-8") as fh:  # LazySupervisedDataset: json.load of a list
        loaded = json.load(fh)
    samples = list(check_records(path, loaded, strict=True))  # VILA's conversation contract, turns alternate
    assert len(samples) == len(mix) - len(detail) + len(caps) - len(answer) == md["records"]
    assert md["detail23k_removed"] == len(detail) > 0 and md["detail23k_unmatched"] == 0
    published = json.loads(path.read_text())
    detail_answers = {r["conversations"][1]["value"] for r in detail}
    assert not any(r["conversations"][-1]["value"] in detail_answers for r in published)
    report = json.loads((root / "reports/sharegpt4v/filter_report.json").read_text())
    assert report["rules"] == FilterRules().describe()
    assert (root / "staging/sharegpt4v/filter-sharegpt4v_instruct_gpt4-vision_cap100k.json").is_file()


@pytest.mark.slow
def test_rerun_is_byte_identical_and_the_yield_floor_is_run_config(built, world, tmp_path):
    root, _ = built
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, tmp_path), instance, ASSETS,
                  run_config=op_config("sharegpt4v_filtered", checks={"min_yield": 1.0}))
    assert res.success, failure_text(res)
    for p in ("sharegpt4v/sharegpt4v_mix738k_remove_sa.json", PT_FILTERED):
        assert (tmp_path / "playground/data" / p).read_bytes() == (root / "playground/data" / p).read_bytes()
    # every planted removal now falls short of a 100 % floor; the other checks still pass
    yields = check_results(res)["sharegpt4v_filtered:yield_per_rule"]
    assert not yields.passed and yields.metadata["bound"].value == 1.0
    assert set(yields.metadata["failing_examples"].value) == {"cap100k", "pretrain"}
    assert checks_passed(res)["sharegpt4v_filtered:no_rule_violations"]


@pytest.mark.slow
def test_malformed_caption_record_fails_naming_file_and_id(make_world, tmp_path):
    world = make_world(families=["llava", "sharegpt4v"], clip=False)
    records, _ = s4_world.cap100k_records(world.ctx)
    records[4]["conversations"] = "not a list"
    (world.hub_root / "datasets" / s4_world.CAPTIONS_REPO / s4_world.CAP100K).write_text(json.dumps(records))
    world.hub.invalidate()
    with dg.instance_for_test() as instance:
        # fails on cap100k, before needing mix665k
        res = run(defs_for(world, tmp_path / "root"), instance, ("sharegpt4v_filtered",))
    assert not res.success
    text = failure_text(res)
    assert f"cannot read {s4_world.CAPTIONS_REPO}@" in text  # the source file, as the source names it
    assert f"{s4_world.CAP100K} record #4 (id {records[4]['id']!r}): 'conversations' must be a non-empty list" in text
    assert not registry_path("sharegpt4v_sft", tmp_path / "root").exists()


@pytest.mark.slow
def test_missing_mix665k_fails_naming_the_upstream_asset(world, tmp_path):
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, tmp_path), instance, ("sharegpt4v_filtered",))
    assert not res.success and "materialize llava_mix665k first" in failure_text(res)
