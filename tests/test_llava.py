"""LLaVA assets on the sample world: CC3M-595K and mix665k read back the way VILA's LazySupervisedDataset
reads them, published as upstream's bytes where nothing is left out, reruns are byte-identical, bad input
(malformed conversations, zip slip) fails naming the file and the record / entry, and the shared
LLaVA-format JSON checks fail on what they guard. (Image roots: ``test_image_roots_*``.)"""

import json
import zipfile

import dagster as dg
import pytest
from PIL import Image

from tests.dagster_runs import check_results, checks_passed, defs_for, failure_text, materializations, op_config, run
from vila_assets.assets._checks import Findings
from vila_assets.assets.llava.checks import (
    CC3M_CHECKS,
    IMAGES_DECODE,
    MIX665K_CHECKS,
    record_images_decode,
    record_json_output_findings,
)
from vila_assets.assets.llava.sources import LlavaSource
from vila_assets.core.image_roots import IMAGE_ROOTS
from vila_assets.core.llava_json import loader_samples
from vila_assets.core.vila_format import REGISTRY, registry_path, write_json
from vila_assets.sample_world.sources import llava as llava_world

ASSETS = ("llava_cc3m_595k", "llava_mix665k")
MIX665K_ROOTS = IMAGE_ROOTS[:6]  # coco/train2017 .. vg/VG_100K_2


@pytest.fixture(scope="module")
def sample_world(tmp_path_factory, tiny_clip_cache):
    """The LLaVA sources alone (no CLIP model): this module reads the world, never edits it."""
    from vila_assets.sample_world.world import SampleWorld

    with SampleWorld(tmp_path_factory.mktemp("llava-world"), scale="test", clip=False, families=["llava"],
                     model_cache=tiny_clip_cache) as world:
        yield world


@pytest.fixture(scope="module")
def built(sample_world, tmp_path_factory):
    """All llava assets materialized once into one data root, for the module's read-only tests, then the
    image roots mix665k uses (the first six partitions), so VILA's loader view can open every image."""
    root = tmp_path_factory.mktemp("llava") / "root"
    with dg.instance_for_test() as instance:
        defs = defs_for(sample_world, root)
        result = run(defs, instance, ASSETS)
        roots = run(defs, instance, ("sft_image_roots",), keys=list(MIX665K_ROOTS))
        assert roots.success, failure_text(roots)
        yield root, result


@pytest.mark.slow
def test_everything_materializes_and_every_check_passes(built):
    _, result = built
    assert result.success, failure_text(result)
    assert set(materializations(result)) == set(ASSETS)
    passed = checks_passed(result)
    # one result per declared check, every one passing
    assert set(passed) == {f"llava_cc3m_595k:{c.name}" for c in CC3M_CHECKS} | {
        f"llava_mix665k:{c.name}" for c in MIX665K_CHECKS}
    assert all(passed.values()), passed
    # CC3M's images ship with it: a missing one is an error (mix665k's: sft_image_roots' coverage check)
    assert check_results(result)["llava_cc3m_595k:images_present"].severity == dg.AssetCheckSeverity.ERROR


@pytest.mark.slow
def test_cc3m_published_at_registry_path_and_loadable(built, sample_world):
    root, result = built
    md = materializations(result)["llava_cc3m_595k"]
    records, planted = llava_world.cc3m_records(sample_world.ctx)
    data_path = registry_path("llava_1_5_align", root)
    assert data_path == root / "playground/data/LLaVA-Pretrain/LLaVA-CC3M-Pretrain-595K.json"
    images = root / REGISTRY["llava_1_5_align"].image_path.removeprefix("./")
    samples = list(loader_samples(data_path, images))
    # the planted missing + truncated images are reported and left out; everything else loads
    assert len(samples) == len(records) - len(planted) == md["records"]
    assert {s["id"] for s in samples} == {r["id"] for r in records if r["image"] not in planted}
    assert (md["images_missing"], md["images_undecodable"], md["records_dropped_bad_image"]) == (1, 1, 2)
    assert set(md["bad_images"]) == set(planted)
    report = json.loads((root / "reports/llava/cc3m_595k_image_problems.json").read_text())
    assert {k: v.split(":")[0] for k, v in report["problems"].items()} == {
        k: ("missing" if v == "missing" else "undecodable") for k, v in planted.items()
    }
    assert all(s["images"] and s["turns"] == 2 for s in samples)
    assert len(md["revision_sha"]) == 40
    decode = check_results(result)["llava_cc3m_595k:images_decode"]
    assert decode.metadata["checked"].value == len(records) - len(planted)  # every published image decoded


@pytest.mark.slow
def test_mix665k_published_verbatim_with_root_report(built, sample_world):
    root, result = built
    md = materializations(result)["llava_mix665k"]
    data_path = registry_path("llava_1_5_sft", root)
    upstream = sample_world.hub_root / "datasets" / llava_world.INSTRUCT_REPO / "llava_v1_5_mix665k.json"
    assert data_path.read_bytes() == upstream.read_bytes()  # every record valid: upstream bytes unchanged
    samples = list(loader_samples(data_path, root / "playground/data"))
    expected = llava_world.mix665k_records(sample_world.ctx)
    assert len(samples) == len(expected) == md["records"]
    assert md["text_only"] == sum(1 for r in expected if "image" not in r) > 0
    report = json.loads((root / "reports/llava/mix665k_image_roots.json").read_text())
    per_root = {}
    for r in expected:
        if "image" in r:
            folder = r["image"].rsplit("/", 1)[0]
            per_root[folder] = per_root.get(folder, 0) + 1
    assert report["roots"] == per_root  # images referenced per root
    assert set(per_root) == {"coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images",
                             "vg/VG_100K", "vg/VG_100K_2"}
    assert all(f"`{r}`" in md["image_roots"] for r in per_root)


@pytest.mark.slow
def test_pinned_rerun_is_byte_identical(built, sample_world, tmp_path):
    """Rerun into a fresh data root, pinned to the recorded shas: the published files are byte-identical."""
    root, result = built
    mds = materializations(result)
    source = LlavaSource(cc3m_revision=mds["llava_cc3m_595k"]["revision_sha"],
                         instruct_revision=mds["llava_mix665k"]["revision_sha"])
    with dg.instance_for_test() as instance:
        res = run(defs_for(sample_world, tmp_path, llava_source=source), instance, ASSETS)
    assert res.success, failure_text(res)
    md = materializations(res)["llava_mix665k"]
    assert md["revision_sha"] == source.instruct_revision
    assert md["source"] == f"{llava_world.INSTRUCT_REPO}@{source.instruct_revision}"
    for name in ("llava_1_5_align", "llava_1_5_sft"):
        assert registry_path(name, tmp_path).read_bytes() == registry_path(name, root).read_bytes()
    a = sorted(p.name for p in (root / "playground/data/LLaVA-Pretrain/images").iterdir())
    b = sorted(p.name for p in (tmp_path / "playground/data/LLaVA-Pretrain/images").iterdir())
    assert a == b


@pytest.mark.slow
def test_cc3m_is_chat_json_verbatim_when_no_record_is_left_out(sample_world, tmp_path):
    """VILA renames chat.json: with nothing dropped (``drop_bad_images`` off), the bytes are upstream's, and
    the checks say what VILA's loader would meet (the planted missing and truncated images)."""
    with dg.instance_for_test() as instance:
        res = run(defs_for(sample_world, tmp_path), instance, ("llava_cc3m_595k",),
                  run_config=op_config("llava_cc3m_595k", drop_bad_images=False))
    assert res.success, failure_text(res)
    passed = checks_passed(res)
    assert not passed["llava_cc3m_595k:images_present"] and not passed["llava_cc3m_595k:images_decode"]
    upstream = sample_world.hub_root / "datasets" / llava_world.CC3M_REPO / "chat.json"
    assert registry_path("llava_1_5_align", tmp_path).read_bytes() == upstream.read_bytes()


def _edit_hub(world, repo, filename, data: bytes):
    (world.hub_root / "datasets" / repo / filename).write_bytes(data)
    world.hub.invalidate()


@pytest.mark.slow
def test_malformed_conversations_fail_naming_file_and_record_id(make_world, tmp_path):
    world = make_world(families=["llava"], clip=False)
    recs = llava_world.mix665k_records(world.ctx)
    bad_id = recs[2]["id"]
    recs[2]["conversations"] = [{"from": "gpt", "value": "answer first"}, {"from": "human", "value": "?"}]
    _edit_hub(world, llava_world.INSTRUCT_REPO, "llava_v1_5_mix665k.json", json.dumps(recs).encode())
    root = tmp_path / "root"
    defs = defs_for(world, root)
    with dg.instance_for_test() as instance:
        res = run(defs, instance, ("llava_mix665k",))
        assert not res.success
        text = failure_text(res)
        assert "llava_v1_5_mix665k.json record #2" in text and repr(bad_id) in text
        assert "turn 0 is from 'gpt', expected 'human'" in text
        assert not registry_path("llava_1_5_sft", root).exists()
        # non-strict publishes the valid records and counts the bad one
        res = run(defs, instance, ("llava_mix665k",), run_config=op_config("llava_mix665k", strict=False))
        assert res.success, failure_text(res)
        md = materializations(res)["llava_mix665k"]
        assert (md["records"], md["invalid_records"]) == (len(recs) - 1, 1)
        published = json.loads(registry_path("llava_1_5_sft", root).read_text())
        assert len(published) == len(recs) - 1
        assert all(r["conversations"][0]["from"] == "human" for r in published)
        assert checks_passed(res)["llava_mix665k:schema"] and checks_passed(res)["llava_mix665k:counts"]


@pytest.mark.slow
def test_zip_entry_escaping_its_folder_fails_naming_zip_and_entry(make_world, tmp_path):
    world = make_world(families=["llava"], clip=False)
    root = tmp_path / "root"
    defs = defs_for(world, root)
    with dg.instance_for_test() as instance:
        assert run(defs, instance, ("llava_cc3m_595k",)).success
        images = root / "playground/data/LLaVA-Pretrain/images"
        before = sorted(p.name for p in images.iterdir())
        zpath = world.hub_root / "datasets" / llava_world.CC3M_REPO / "images.zip"
        with zipfile.ZipFile(zpath, "a") as zf:
            zf.writestr("../../escaped.jpg", b"gotcha")
        world.hub.invalidate()
        res = run(defs, instance, ("llava_cc3m_595k",))
        assert not res.success
        text = failure_text(res)
        assert "images.zip: entry '../../escaped.jpg': '..' component escapes the destination" in text
        assert not list(root.rglob("escaped.jpg"))
        assert sorted(p.name for p in images.iterdir()) == before  # the published tree is untouched


# --- the shared JSON output checks, on files made to break them ------------------------------------------------


def _conv(rid, image=None, answer="A red circle."):
    question = "<image>\nWhat?" if image else "What?"
    rec = {"id": rid, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    if image:
        rec["image"] = image
    return rec


def _results(findings) -> dict:
    return {r.check_name: r for r in findings.results()}


def test_json_output_checks_pass_on_a_good_file(tmp_path):
    (tmp_path / "coco/train2017").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "coco/train2017/1.jpg")
    path = write_json(tmp_path / "good.json", [_conv("a", "coco/train2017/1.jpg"), _conv("b", answer="Text only.")])
    findings = Findings(CC3M_CHECKS)
    report = record_json_output_findings(findings, path, tmp_path, expected_records=2)
    record_images_decode(findings, path, tmp_path)
    assert report.records == 2 and all(r.passed for r in findings.results())


def test_json_output_checks_fail_on_what_they_guard(tmp_path):
    """A bad record, a count the run did not write, a repeated conversation and a missing image each fail
    their own check (read back from the file, not from what the run believed)."""
    (tmp_path / "coco/train2017").mkdir(parents=True)
    (tmp_path / "coco/train2017/1.jpg").write_bytes(b"<html>not an image</html>")
    bad = {"id": "bad", "conversations": [{"from": "gpt", "value": "answer first"}]}
    records = [_conv("a", "coco/train2017/1.jpg"), _conv("copy", "coco/train2017/1.jpg"),
               _conv("gone", "gqa/images/2.jpg", "Other."), bad]
    path = write_json(tmp_path / "bad.json", records)
    findings = Findings(CC3M_CHECKS)
    record_json_output_findings(findings, path, tmp_path, expected_records=4)
    record_images_decode(findings, path, tmp_path)
    results = _results(findings)
    assert not results["schema"].passed and "record #3" in results["schema"].description
    assert not results["counts"].passed and results["counts"].metadata["in_file"].value == 3
    assert not results["no_identical_conversations"].passed
    assert results["no_identical_conversations"].severity == dg.AssetCheckSeverity.WARN
    present = results["images_present"]
    assert not present.passed and present.metadata["failing_examples"].value == {
        "gqa/images": "1 of 1 images missing; the root folder does not exist"}
    decode = results[IMAGES_DECODE.name]
    assert not decode.passed and set(decode.metadata["failing_examples"].value) == {
        "coco/train2017/1.jpg", "gqa/images/2.jpg"}
