"""The sample world's two ShareGPT4V repos hold what the real ones hold (tables transcribed from
upstream-sources.md §5), their published files follow from their raw files, and ``referenced_images`` names
every image any of their files references."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.upstream_layout import RepoLayout, layout_problems
from vila_assets.core.llava_json import image_root
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import llava as llava_world
from vila_assets.sample_world.sources import sharegpt4v as s4_world

CAP100K = "sharegpt4v_instruct_gpt4-vision_cap100k.json"
PT = "share-captioner_coco_lcs_sam_1246k_1107.json"

# Lin-Chen/ShareGPT4V (first upload 407c0b9) [V]
LIN_CHEN = RepoLayout(
    "Lin-Chen/ShareGPT4V",
    required=(PT, CAP100K, "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json", "README.md",
              ".gitattributes"),
    only=(re.escape(PT), re.escape(CAP100K), re.escape("sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json"),
          r"README\.md", r"\.gitattributes"),
)
# mit-han-lab/ShareGPT4V main 48628ff [V]; no README at main; the filtered cap100k and Lin-Chen's SFT mix
# were replaced by raw_data files in c8b2957 [V]
MIT_RAW = ("raw_data/llava_detail_23k.json", "raw_data/llava_v1_5_mix665k.json", f"raw_data/{PT}", f"raw_data/{CAP100K}")
MIT = RepoLayout(
    "mit-han-lab/ShareGPT4V",
    required=("sharegpt4v_mix738k_remove_sa.json", "filter-share-captioner_coco_lcs_sam_1246k_1107.json",
              "construct_sharegpt4v_sft.py", "filter.py", "run.sh", ".gitignores", ".gitattributes", *MIT_RAW),
    forbidden=("README.md", "filter-sharegpt4v_instruct_gpt4-vision_cap100k.json",
               "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json", ".gitignore"),
    only=(r"sharegpt4v_mix738k_remove_sa\.json", r"filter-share-captioner_coco_lcs_sam_1246k_1107\.json",
          r"construct_sharegpt4v_sft\.py", r"filter\.py", r"run\.sh", r"\.gitignores", r"\.gitattributes",
          *(re.escape(p) for p in MIT_RAW)),
)


@pytest.fixture(scope="module", params=["test", "demo"])
def world(request, tmp_path_factory) -> SourceContext:
    """The family's repos as the sample world builds them, at both scales."""
    ctx = SourceContext(tmp_path_factory.mktemp(f"s4-{request.param}"), "http://127.0.0.1:9", scale=request.param)
    s4_world.build(ctx)
    return ctx


def repo(ctx: SourceContext, repo_id: str) -> Path:
    return ctx.hub_root / "datasets" / repo_id


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("layout", [LIN_CHEN, MIT], ids=lambda layout: layout.repo_id)
def test_repo_lists_what_the_real_repo_lists(world, layout):
    assert layout_problems(world.hub_root, layout) == []


def test_oddities_are_kept(world):
    mit, lin = repo(world, MIT.repo_id), repo(world, LIN_CHEN.repo_id)
    assert (mit / ".gitignores").stat().st_size == 0  # 0 B, sic
    for name in (PT, CAP100K):  # raw_data copies are Lin-Chen's bytes [V]
        assert (mit / "raw_data" / name).read_bytes() == (lin / name).read_bytes()
    # the real scripts are not readable: the fake ones say they are stand-ins, first thing
    for script in ("construct_sharegpt4v_sft.py", "filter.py"):
        assert "STAND-IN" in (mit / script).read_text().splitlines()[0]
    assert (mit / "run.sh").read_text().split(";")[0].strip() == "python construct_sharegpt4v_sft.py"


def test_run_sh_remakes_the_published_files(world, tmp_path):
    """The published files are what the repo's own scripts make from raw_data (run as a user would)."""
    mit = repo(world, MIT.repo_id)
    work = tmp_path / "mit"
    shutil.copytree(mit, work)
    for name in ("sharegpt4v_mix738k_remove_sa.json", "filter-share-captioner_coco_lcs_sam_1246k_1107.json"):
        (work / name).unlink()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", "run.sh"], cwd=work, env=env, check=True, timeout=120)
    for name in ("sharegpt4v_mix738k_remove_sa.json", "filter-share-captioner_coco_lcs_sam_1246k_1107.json"):
        assert (work / name).read_bytes() == (mit / name).read_bytes(), name


def test_published_files_are_the_raw_ones_filtered_and_recombined(world):
    mit = repo(world, MIT.repo_id)
    raw_pt, pt = load(mit / "raw_data" / PT), load(mit / "filter-share-captioner_coco_lcs_sam_1246k_1107.json")
    kept_ids = [r["id"] for r in pt]
    assert kept_ids == [r["id"] for r in raw_pt if r["id"] in set(kept_ids)]  # a subset, in raw order
    assert pt == [r for r in raw_pt if r["id"] in set(kept_ids)]  # records unchanged
    _, answer = s4_world.pt_records(world)
    dropped = [r for r in raw_pt if r["id"] not in set(kept_ids)]
    assert dropped and all(re.search(r"sa_\d", r["conversations"][1]["value"]) or answer.get(r["id"]) for r in dropped)

    mix665k, detail = load(mit / "raw_data/llava_v1_5_mix665k.json"), load(mit / "raw_data/llava_detail_23k.json")
    caps = load(mit / "raw_data" / CAP100K)
    sft = load(mit / "sharegpt4v_mix738k_remove_sa.json")
    detail_turns = {json.dumps(r["conversations"]) for r in detail}
    llava_part = [r for r in mix665k if json.dumps(r["conversations"]) not in detail_turns]
    assert len(llava_part) == len(mix665k) - len(detail) > 0
    assert sft[: len(llava_part)] == llava_part  # mix665k has nothing to filter in the sample world
    cap_ids = [r["id"] for r in sft[len(llava_part):]]
    assert cap_ids == [r["id"] for r in caps if r["id"] in set(cap_ids)] and 0 < len(cap_ids) < len(caps)


def test_lin_chen_sft_mix_swaps_detail_samples_for_captions(world):
    lin = repo(world, LIN_CHEN.repo_id)
    mix = load(lin / "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json")
    original = llava_world.mix665k_records(world)
    caps = {r["id"]: r for r in load(lin / CAP100K)}
    assert len(mix) == len(original)
    swapped = [i for i, (a, b) in enumerate(zip(mix, original)) if a != b]
    assert len(swapped) == len(llava_world.detail23k_records(world))
    assert all(mix[i] == caps[mix[i]["id"]] for i in swapped)


def test_referenced_images_cover_every_file_of_both_repos(world):
    referenced = set(s4_world.referenced_images(world))
    for path in sorted(repo(world, LIN_CHEN.repo_id).glob("*.json")) + sorted(repo(world, MIT.repo_id).rglob("*.json")):
        if path.name == "llava_detail_23k.json":
            continue  # bare COCO file names, never joined to an image folder (its samples are mix665k's)
        images = {r["image"] for r in load(path) if "image" in r}
        assert images <= referenced, (path.name, sorted(images - referenced)[:3])
    roots = {image_root(p) for p in referenced}
    assert {"sam/images", "coco/train2017", "llava/llava_pretrain/images", "wikiart/images", "web-celebrity/images",
            "web-landmark/images", "share_textvqa/images", "gqa/images", "ocr_vqa/images", "textvqa/train_images",
            "vg/VG_100K", "vg/VG_100K_2"} <= roots
