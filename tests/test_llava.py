"""LLaVA assets on the sample world: CC3M-595K and mix665k read back the way VILA's LazySupervisedDataset
reads them, reruns are byte-identical, and bad input (malformed conversations, zip slip) fails naming the
file and the record / entry."""

import json
import zipfile

import dagster as dg
import pytest

from vila_assets.sample_world.world import world_env
from vila_assets.assets import llava
from vila_assets.core.llava_json import loader_samples
from vila_assets.core.vila_format import REGISTRY, registry_path
from vila_assets.resources.config import default_resources
from vila_assets.sample_world.sources import llava as llava_source
from vila_assets.sample_world.world import SampleWorld

ASSETS = ("sft_image_roots", "llava_cc3m_595k", "llava_mix665k")


def run(instance, keys=ASSETS, run_config=None):
    defs = dg.Definitions.merge(llava.defs, dg.Definitions(resources=default_resources()))
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=[dg.AssetKey(k) for k in keys], instance=instance, run_config=run_config, raise_on_error=False
    )


def materializations(result) -> dict[str, dict]:
    out = {}
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            m = ev.event_specific_data.materialization
            out[m.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return out


def checks(result) -> dict[str, bool]:
    return {
        f"{ev.event_specific_data.asset_key.to_user_string()}:{ev.event_specific_data.check_name}": ev.event_specific_data.passed
        for ev in result.all_events
        if ev.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def failure_text(result) -> str:
    parts = []
    for ev in result.all_events:
        if ev.is_failure and ev.event_specific_data is not None:
            err = getattr(ev.event_specific_data, "error", None)
            if err is not None:
                parts.append(err.to_string())
            ufd = getattr(ev.event_specific_data, "user_failure_data", None)
            if ufd is not None:
                parts.append(ufd.description or "")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One world, one data root, all llava assets materialized once for the module's read-only tests."""
    base = tmp_path_factory.mktemp("llava")
    with SampleWorld(base / "world", scale="test", families=["llava", "sharegpt4v"], clip=False) as world:
        with world_env(world, base / "root"), dg.instance_for_test() as instance:
            result = run(instance)
            yield world, base / "root", result


def test_everything_materializes_and_every_check_passes(built):
    _, _, result = built
    assert result.success, failure_text(result)
    assert set(materializations(result)) == set(ASSETS)
    assert checks(result) and all(checks(result).values()), checks(result)


def test_cc3m_published_at_registry_path_and_loadable(built):
    world, root, result = built
    md = materializations(result)["llava_cc3m_595k"]
    records, planted = llava_source.cc3m_records(world.ctx)
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


def test_mix665k_published_verbatim_with_root_report(built):
    world, root, result = built
    md = materializations(result)["llava_mix665k"]
    data_path = registry_path("llava_1_5_sft", root)
    upstream = world.hub_root / "datasets" / llava_source.INSTRUCT_REPO / "llava_v1_5_mix665k.json"
    assert data_path.read_bytes() == upstream.read_bytes()  # every record valid: upstream bytes unchanged
    samples = list(loader_samples(data_path, root / "playground/data"))
    expected = llava_source.mix665k_records(world.ctx)
    assert len(samples) == len(expected) == md["records"]
    assert md["text_only"] == sum(1 for r in expected if "image" not in r) > 0
    report = json.loads((root / "reports/llava/mix665k_image_roots.json").read_text())
    roots = {r["root"]: r for r in report["roots"]}
    assert set(roots) == {"coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K", "vg/VG_100K_2"}
    assert all(r["present"] == r["referenced"] and r["folder_exists"] for r in roots.values())


def test_pinned_rerun_is_byte_identical_and_reports_missing_roots(built, tmp_path):
    """Rerun into a fresh data root, pinned to the recorded sha, without fetching the image roots: the
    published files are byte-identical, and the presence report (and its WARN check) says what is missing."""
    world, root, result = built
    sha = materializations(result)["llava_mix665k"]["revision_sha"]
    with world_env(world, tmp_path), dg.instance_for_test() as instance:
        res = run(instance, ("llava_cc3m_595k", "llava_mix665k"),
                  {"ops": {"llava_mix665k": {"config": {"revision": sha}}}})
    assert res.success, failure_text(res)
    md = materializations(res)["llava_mix665k"]
    assert md["revision_sha"] == sha and md["images_missing"] == md["images_referenced"] > 0
    assert checks(res)["llava_mix665k:images_present"] is False
    for name in ("llava_1_5_align", "llava_1_5_sft"):
        assert registry_path(name, tmp_path).read_bytes() == registry_path(name, root).read_bytes()
    a = sorted(p.name for p in (root / "playground/data/LLaVA-Pretrain/images").iterdir())
    b = sorted(p.name for p in (tmp_path / "playground/data/LLaVA-Pretrain/images").iterdir())
    assert a == b


def _edit_hub(world, repo, filename, data: bytes):
    (world.hub_root / "datasets" / repo / filename).write_bytes(data)
    world.hub.invalidate()


@pytest.fixture(scope="module")
def own_world(tmp_path_factory):
    """A world the bad-input tests edit (each edits a different file)."""
    with SampleWorld(tmp_path_factory.mktemp("bad") / "world", scale="test", families=["llava"], clip=False) as world:
        yield world


def test_malformed_conversations_fail_naming_file_and_record_id(own_world, tmp_path):
    recs = llava_source.mix665k_records(own_world.ctx)
    bad_id = recs[2]["id"]
    recs[2]["conversations"] = [{"from": "gpt", "value": "answer first"}, {"from": "human", "value": "?"}]
    _edit_hub(own_world, llava_source.INSTRUCT_REPO, "llava_v1_5_mix665k.json", json.dumps(recs).encode())
    with world_env(own_world, tmp_path / "root"), dg.instance_for_test() as instance:
        res = run(instance, ("llava_mix665k",))
        assert not res.success
        text = failure_text(res)
        assert "llava_v1_5_mix665k.json record #2" in text and repr(bad_id) in text
        assert "turn 0 is from 'gpt', expected 'human'" in text
        assert not registry_path("llava_1_5_sft", tmp_path / "root").exists()
        # non-strict publishes the valid records and counts the bad one
        res = run(instance, ("llava_mix665k",), {"ops": {"llava_mix665k": {"config": {"strict": False}}}})
        assert res.success
        md = materializations(res)["llava_mix665k"]
        assert (md["records"], md["invalid_records"]) == (len(recs) - 1, 1)
        published = json.loads(registry_path("llava_1_5_sft", tmp_path / "root").read_text())
        assert len(published) == len(recs) - 1
        assert all(r["conversations"][0]["from"] == "human" for r in published)


def test_zip_entry_escaping_its_folder_fails_naming_zip_and_entry(own_world, tmp_path):
    root = tmp_path / "root"
    with world_env(own_world, root), dg.instance_for_test() as instance:
        assert run(instance, ("llava_cc3m_595k",)).success
        images = root / "playground/data/LLaVA-Pretrain/images"
        before = sorted(p.name for p in images.iterdir())
        zpath = own_world.hub_root / "datasets" / llava_source.CC3M_REPO / "images.zip"
        with zipfile.ZipFile(zpath, "a") as zf:
            zf.writestr("../../escaped.jpg", b"gotcha")
        own_world.hub.invalidate()
        res = run(instance, ("llava_cc3m_595k",))
        assert not res.success
        text = failure_text(res)
        assert "images.zip: entry '../../escaped.jpg': '..' component escapes the destination" in text
        assert not list(root.rglob("escaped.jpg"))
        assert sorted(p.name for p in images.iterdir()) == before  # the published tree is untouched
