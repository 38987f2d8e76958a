"""``sft_image_roots`` on the sample world: every root fetched from the archive host at the official paths,
in VILA's layout, with full coverage of what mix665k and ShareGPT4V reference; OCR-VQA covers crawled and
saved as ``<id>.jpg``; a dropped download resumes; a gap, an unconfigured root or a bad checksum fails
naming what is wrong."""

import json
import zipfile

import dagster as dg
import pytest

from tests.dagster_runs import check_results, defs_for, failure_text, partition_metadata, run
from vila_assets.assets.llava.sources import Archive, ImageRootsSource
from vila_assets.core.image_roots import IMAGE_ROOTS
from vila_assets.core.ocr_vqa import read_covers
from vila_assets.sample_world.archive_web import ARCHIVES_DIR, OCR_VQA_DATASET, image_roots_source
from vila_assets.sample_world.sources import llava as llava_world

ASSET = "sft_image_roots"
REFERENCING = ("llava_mix665k", "sharegpt4v_filtered")


@pytest.fixture(scope="module")
def fetched(tmp_path_factory, tiny_clip_cache):
    """mix665k and ShareGPT4V published, then every image root in one ranged run, on a private world."""
    from vila_assets.sample_world.world import SampleWorld

    base = tmp_path_factory.mktemp("roots")
    with SampleWorld(base / "world", scale="test", clip=False, families=["llava", "sharegpt4v"],
                     model_cache=tiny_clip_cache) as world, dg.instance_for_test() as instance:
        root = base / "root"
        defs = defs_for(world, root)
        assert run(defs, instance, REFERENCING).success
        yield world, root, instance, run(defs, instance, (ASSET,), keys=list(IMAGE_ROOTS))


def _data(root):
    return root / "playground/data"


def report_files(root) -> list[str]:
    """The referencing files coverage read, as its report names them (relative to playground/data)."""
    report = json.loads((root / "reports/llava/image_roots/coco__train2017.json").read_text())
    return [f.removeprefix("playground/data/") for f in report["referencing_files"]]


def test_every_root_holds_every_referenced_image(fetched):
    world, root, instance, result = fetched
    assert result.success, failure_text(result)
    coverage = check_results(result)[f"{ASSET}:coverage"]
    assert coverage.passed and coverage.metadata["checked"].value == len(IMAGE_ROOTS)
    referenced = llava_world.referenced_images(world.ctx)
    assert all((_data(root) / p).is_file() for p in referenced)
    mds = {key: partition_metadata(instance, ASSET, key) for key in IMAGE_ROOTS}
    assert all(md["coverage"] == 1.0 and md["missing"] == 0 for md in mds.values())
    # what coverage counted = the images the published files reference (the filtered-out captions' are not)
    published = [root / "playground/data" / f for f in report_files(root)]
    in_files = {r["image"] for f in published for r in json.loads(f.read_text()) if "image" in r}
    assert sum(md["referenced"] for md in mds.values()) == len(in_files) and in_files <= set(referenced)
    # the archives hold unreferenced images too (OCR-VQA under curated: only the referenced covers are fetched)
    assert all(md["images"] > md["referenced"] for key, md in mds.items() if key != "ocr_vqa/images")
    report = json.loads((root / "reports/llava/image_roots/coco__train2017.json").read_text())
    assert report["missing"] == [] and len(report["referencing_files"]) == 3  # mix665k + ShareGPT4V SFT and PT


def test_roots_are_in_vilas_layout(fetched):
    _, root, _, _ = fetched
    data = _data(root)
    assert sorted(p.name for p in (data / "vg").iterdir()) == ["VG_100K", "VG_100K_2"]
    for folder in ("coco/train2017", "gqa/images", "textvqa/train_images", "vg/VG_100K", "wikiart/images"):
        assert all(p.is_file() and p.suffix == ".jpg" for p in (data / folder).iterdir()), folder
    assert not list((data / "sam/images").glob("*.json"))  # SA-1B's annotations are left out
    pretrain = data / "llava/llava_pretrain/images"
    assert all(p.is_dir() and len(p.name) == 5 for p in pretrain.iterdir())  # 00453/004539375.jpg
    assert not [p for p in data.rglob(".*")]  # no staging folder or partial download left behind


def test_the_dropped_coco_download_resumed(fetched):
    world, _, instance, _ = fetched
    sources = partition_metadata(instance, ASSET, "coco/train2017")["sources"]
    assert "http://images.cocodataset.org/zips/train2017.zip" in sources and f"{world.archive_base}/zips/" in sources
    requests = [r for p, r in world.archive_web.requests if p == "/zips/train2017.zip"]
    assert requests[0] is None and requests[1].startswith("bytes=") and requests[1] != "bytes=0-"


def test_ocr_vqa_covers_are_jpegs_named_by_book_referenced_ones_only(fetched):
    world, root, _, _ = fetched
    covers = read_covers(world.directory / ARCHIVES_DIR / OCR_VQA_DATASET.lstrip("/"))
    folder = _data(root) / "ocr_vqa/images"
    saved = {p.name for p in folder.iterdir()}
    referenced = {p.split("/")[-1] for p in llava_world.referenced_images(world.ctx) if p.startswith("ocr_vqa/")}
    assert saved == referenced and len(covers) > len(referenced)  # curated: only what the SFT files use
    gif_books = [b for b, url in covers.items() if url.endswith(".gif") and f"{b}.jpg" in saved]
    assert gif_books  # a GIF cover ...
    assert all((folder / name).read_bytes()[:3] == b"\xff\xd8\xff" for name in saved)  # ... saved as a real JPEG


def test_the_vila_policy_fetches_every_book_of_dataset_json(fetched, tmp_path):
    world, _, _, _ = fetched
    covers = read_covers(world.directory / ARCHIVES_DIR / OCR_VQA_DATASET.lstrip("/"))
    policy = {"resources": {"data_policy": {"config": {"policy": "vila"}}}}
    defs = defs_for(world, tmp_path)
    with dg.instance_for_test() as instance:
        assert run(defs, instance, ("llava_mix665k",)).success
        res = run(defs, instance, (ASSET,), keys=["ocr_vqa/images"], run_config=policy)
        assert res.success, failure_text(res)
        md = partition_metadata(instance, ASSET, "ocr_vqa/images")
    assert {p.name for p in (_data(tmp_path) / "ocr_vqa/images").iterdir()} == {f"{b}.jpg" for b in covers}
    assert md["images"] == len(covers) > md["referenced"] and md["coverage"] == 1.0
    assert check_results(res)[f"{ASSET}:coverage"].passed


def test_coverage_is_not_claimed_without_a_referencing_file(fetched, tmp_path):
    world, _, _, _ = fetched
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, tmp_path), instance, (ASSET,), keys=["web-landmark/images"])
    assert res.success, failure_text(res)
    coverage = check_results(res)[f"{ASSET}:coverage"]
    assert not coverage.passed
    assert "no referencing file is published" in coverage.metadata["failing_examples"].value["web-landmark/images"]


def test_a_root_without_configured_archives_fails_naming_the_setting(fetched, tmp_path):
    world, _, _, _ = fetched
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, tmp_path, image_roots_source=ImageRootsSource()), instance, (ASSET,),
                  keys=["sam/images"])
    assert not res.success
    assert "sam/images: no archive configured; list its archives in image_roots_source.sam_images" in failure_text(res)


def test_a_checksum_mismatch_fails_naming_the_url_and_keeps_the_root(fetched):
    world, root, _, _ = fetched
    before = sorted(p.name for p in (_data(root) / "gqa/images").iterdir())
    url = "https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip"
    source = image_roots_source(world.archive_base, gqa_images=[Archive(url=url, strip="images", sha256="0" * 64)])
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, root, image_roots_source=source), instance, (ASSET,), keys=["gqa/images"])
    assert not res.success
    text = failure_text(res)
    assert f"gqa/images: {url} (via {world.archive_base}/nlp/data/gqa/images.zip): sha256 " in text
    assert sorted(p.name for p in (_data(root) / "gqa/images").iterdir()) == before


def test_an_image_missing_from_its_archive_fails_coverage_naming_it(fetched):
    world, root, _, _ = fetched
    served = world.directory / ARCHIVES_DIR / "nlp/data/gqa/images.zip"
    original = served.read_bytes()
    referenced = sorted(p.split("/", 2)[2] for p in llava_world.referenced_images(world.ctx) if p.startswith("gqa/"))
    with zipfile.ZipFile(served) as zf:
        kept = {n: zf.read(n) for n in zf.namelist() if n != f"images/{referenced[0]}"}
    try:
        with zipfile.ZipFile(served, "w") as zf:
            for name, data in kept.items():
                zf.writestr(name, data)
        with dg.instance_for_test() as instance:
            res = run(defs_for(world, root), instance, (ASSET,), keys=["gqa/images"])
            md = partition_metadata(instance, ASSET, "gqa/images")
    finally:
        served.write_bytes(original)
    assert res.success  # the root is in place; the check reports the gap
    coverage = check_results(res)[f"{ASSET}:coverage"]
    assert not coverage.passed and coverage.metadata["worst_subject"].value == "gqa/images"
    assert md["missing_names"] == [referenced[0]] and md["coverage"] < 1.0
    report = json.loads((root / "reports/llava/image_roots/gqa__images.json").read_text())
    assert report["missing"] == [referenced[0]]
