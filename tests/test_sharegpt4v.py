"""ShareGPT4V: each written rule removes what it should and spares the near misses; the asset removes
exactly the planted samples, recombines mix665k - detail23k + cap100k, and its outputs load like VILA's."""

import json

import dagster as dg
import pytest

from vila_assets.sample_world.world import world_env
from tests.test_llava import checks, failure_text, materializations
from vila_assets.assets import llava, sharegpt4v
from vila_assets.core.llava_json import loader_samples
from vila_assets.core.sharegpt4v import FilterRules, SampleFilter, detail_key, ngram_repeat_ratio, recombine_sft, sentence_repeats
from vila_assets.core.vila_format import registry_path
from vila_assets.resources.config import default_resources
from vila_assets.sample_world.sources import llava as llava_source
from vila_assets.sample_world.sources import sharegpt4v as s4_source
from vila_assets.sample_world.world import SampleWorld


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
        (NATURAL + " It is plain. It is plain. It is plain. It is plain.", None),  # too short to count
        ("The image shows " + "a red circle next to " * 12 + "a wall", "repeated_ngrams"),
        ("a red circle next to " * 3, None),  # too few n-grams to judge
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
    assert SampleFilter(FilterRules(max_sentence_repeats=3)).reason(rec(loop)) is None
    assert sentence_repeats(loop, 12) == 3
    ratio, total = ngram_repeat_ratio("a b c d " * 10, 4)
    assert total == 37 and ratio == pytest.approx(1 - 4 / 37)


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


def run(instance, run_config=None, keys=("sft_image_roots", "llava_mix665k", "sharegpt4v_filtered")):
    defs = dg.Definitions.merge(llava.defs, sharegpt4v.defs, dg.Definitions(resources=default_resources()))
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(k) for k in keys], instance=instance, run_config=run_config, raise_on_error=False
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("s4")
    with SampleWorld(base / "world", scale="test", families=["llava", "sharegpt4v"], clip=False) as world:
        with world_env(world, base / "root"), dg.instance_for_test() as instance:
            yield world, base / "root", run(instance)


def test_asset_removes_exactly_the_planted_samples(built):
    world, root, result = built
    assert result.success, failure_text(result)
    assert checks(result) and all(checks(result).values()), checks(result)
    md = materializations(result)["sharegpt4v_filtered"]
    for prefix, gen in (("cap100k", s4_source.cap100k_records), ("pretrain", s4_source.pt_records)):
        records, answer = gen(world.ctx)
        for rule in ("sam_id_leak", "repeated_sentence", "repeated_ngrams", "duplicate_conversation"):
            assert md[f"{prefix}_removed_{rule}"] == sum(1 for r in answer.values() if r == rule), (prefix, rule)
        assert md[f"{prefix}_kept"] == len(records) - len(answer)
    pt = json.loads((root / "playground/data/ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json").read_text())
    records, answer = s4_source.pt_records(world.ctx)
    assert [r["id"] for r in pt] == [r["id"] for r in records if r["id"] not in answer]


def test_sft_file_is_mix665k_minus_detail_plus_captions_and_loads(built):
    world, root, result = built
    md = materializations(result)["sharegpt4v_filtered"]
    mix = llava_source.mix665k_records(world.ctx)
    detail = llava_source.detail23k_records(world.ctx)
    caps, answer = s4_source.cap100k_records(world.ctx)
    path = registry_path("sharegpt4v_sft", root)
    assert path == root / "playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json"
    samples = list(loader_samples(path, root / "playground/data"))  # every image opens, turns alternate
    assert len(samples) == len(mix) - len(detail) + len(caps) - len(answer) == md["records"]
    assert md["detail23k_removed"] == len(detail) > 0 and md["detail23k_unmatched"] == 0
    published = json.loads(path.read_text())
    detail_answers = {r["conversations"][1]["value"] for r in detail}
    assert not any(r["conversations"][-1]["value"] in detail_answers for r in published)
    report = json.loads((root / "reports/sharegpt4v/filter_report.json").read_text())
    assert report["rules"] == FilterRules().describe()


def test_rerun_is_byte_identical(built, tmp_path):
    world, root, _ = built
    with world_env(world, tmp_path), dg.instance_for_test() as instance:
        assert run(instance, keys=("llava_mix665k", "sharegpt4v_filtered")).success
    for p in ("sharegpt4v/sharegpt4v_mix738k_remove_sa.json",
              "ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json"):
        assert (tmp_path / "playground/data" / p).read_bytes() == (root / "playground/data" / p).read_bytes()


def test_malformed_caption_record_fails_naming_file_and_id(tmp_path):
    with SampleWorld(tmp_path / "world", scale="test", families=["llava", "sharegpt4v"], clip=False) as world:
        records, _ = s4_source.cap100k_records(world.ctx)
        records[4]["conversations"] = "not a list"
        (world.hub_root / "datasets" / s4_source.CAPTIONS_REPO / s4_source.CAP100K).write_text(json.dumps(records))
        world.hub.invalidate()
        with world_env(world, tmp_path / "root"), dg.instance_for_test() as instance:
            res = run(instance, keys=("sharegpt4v_filtered",))  # fails on cap100k, before needing mix665k
    assert not res.success
    text = failure_text(res)
    assert f"{s4_source.CAP100K} record #4 (id {records[4]['id']!r}): 'conversations' must be a non-empty list" in text
