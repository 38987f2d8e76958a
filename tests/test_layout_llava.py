"""The sample world's LLaVA repos and image archives against the real ones, as upstream-sources.md §6 lists
them (tables transcribed here; the project never reads the reference itself)."""

import re
from urllib.parse import urlsplit

import pytest

from tests.upstream_layout import RepoLayout, layout_problems
from vila_assets.core.image_roots import OFFICIAL_ARCHIVES
from vila_assets.sample_world.archive_web import ARCHIVES_DIR

LAYOUTS = (
    RepoLayout(
        "liuhaotian/LLaVA-CC3M-Pretrain-595K",
        required=("chat.json", "metadata.json", "images.zip", "README.md", ".gitattributes"),
        only=(r"chat\.json", r"metadata\.json", r"images\.zip", r"README\.md", r"\.gitattributes"),
        notes={"*": "[V] one squashed commit 814894e; VILA renames chat.json and unzips images.zip -d images"},
    ),
    RepoLayout(
        "liuhaotian/LLaVA-Pretrain",
        required=("blip_laion_cc_sbu_558k.json", "blip_laion_cc_sbu_558k_meta.json", "images.zip", "README.md"),
        only=(r"blip_laion_cc_sbu_558k\.json", r"blip_laion_cc_sbu_558k_meta\.json", r"images\.zip", r"README\.md"),
        notes={"images.zip": "[V] 27.4 GB; only needed for ShareGPT4V's llava/llava_pretrain/images paths"},
    ),
    RepoLayout(
        "liuhaotian/LLaVA-Instruct-150K",
        required=("llava_v1_5_mix665k.json", "llava_instruct_150k.json", "llava_instruct_80k.json",
                  "conversation_58k.json", "detail_23k.json", "complex_reasoning_77k.json"),
        forbidden=(r"re:.*\.zip", "re:image_roots.*"),
        only=(r"llava_v1_5_mix665k\.json", r"llava_instruct_150k\.json", r"llava_instruct_80k\.json",
              r"conversation_58k\.json", r"detail_23k\.json", r"complex_reasoning_77k\.json"),
        notes={"llava_v1_5_mix665k.json": "[V] added 011f884"},
    ),
)

# the official archive URLs of mix665k's image roots (LLaVA README, [V])
OFFICIAL_URLS = {
    "coco/train2017": ["http://images.cocodataset.org/zips/train2017.zip"],
    "gqa/images": ["https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip"],
    "textvqa/train_images": ["https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip"],
    "vg/VG_100K": ["https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip"],
    "vg/VG_100K_2": ["https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip"],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip_cache):
    from vila_assets.sample_world.world import SampleWorld

    with SampleWorld(tmp_path_factory.mktemp("llava-layout"), scale="test", clip=False, families=["llava"],
                     model_cache=tiny_clip_cache) as world:
        yield world


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.repo_id)
def test_fake_repo_matches_the_real_listing(world, layout):
    assert layout_problems(world.hub_root, layout) == []


def test_no_invented_image_roots_repo(world):
    assert not (world.hub_root / "datasets/vila-assets").exists()


def test_image_archives_are_served_at_the_official_paths(world):
    assert {root: [a.url for a in archives] for root, archives in OFFICIAL_ARCHIVES.items()} == OFFICIAL_URLS
    served = world.directory / ARCHIVES_DIR
    for urls in OFFICIAL_URLS.values():
        for url in urls:
            assert (served / urlsplit(url).path.lstrip("/")).is_file(), url


def test_ocr_vqa_covers_are_amazon_urls_some_of_them_gif(world):
    import json

    from vila_assets.sample_world.archive_web import OCR_VQA_DATASET

    data = json.loads((world.directory / ARCHIVES_DIR / OCR_VQA_DATASET.lstrip("/")).read_text())
    assert all(re.fullmatch(r"[0-9]{9}[0-9X]", book) for book in data)
    urls = [entry["imageURL"] for entry in data.values()]
    assert all(u.startswith("http://ecx.images-amazon.com/images/I/") for u in urls)
    assert any(u.endswith(".gif") for u in urls) and any(u.endswith(".jpg") for u in urls)
    assert all({"questions", "answers", "title", "authorName", "genre", "split"} <= set(e) for e in data.values())
