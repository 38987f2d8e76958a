"""The sample world's ``jmhessel/mmc4-core-ff`` held against the real repository, as transcribed from
the reference (upstream-sources.md, section 2): file names, zip contents, record shapes and the gaps."""

from __future__ import annotations

import json
import re
import zipfile

import pytest

from tests.upstream_layout import RepoLayout, layout_problems, listing
from vila_assets.sample_world.sources import mmc4 as world_mmc4

SHARD = r"docs_no_face_shard_(\d+)_v3\.jsonl\.zip"
# The repo's folder layout is unverified [U]: shards at the top level or in one subfolder are both real
# readings (readers accept both; tests/test_mmc4_sources.py reads a subfolder). The world uses the top level.
MMC4_CORE_FF = RepoLayout(
    repo_id="jmhessel/mmc4-core-ff",
    required=(f"re:(?:[^/]+/)?{SHARD}",),
    # the gated non-ff core names (docs_shard_N_v3.jsonl) and the full set's v2 are other datasets
    forbidden=(r"re:.*docs_shard_\d+.*", r"re:.*_v2\.jsonl.*", r"re:.*\.jsonl"),
    only=(rf"(?:[^/]+/)?{SHARD}", r"README\.md", r"\.gitattributes"),
    notes={
        SHARD: "[V] core-ff URL pattern docs_no_face_shard_{N}_v3.jsonl.zip (allenai/mmc4 history)",
        "layout": "[U] HF file layout of the jmhessel repos",
    },
)
# [V] zip content: one deflated member named like the zip without '.zip'
ZIP_MEMBER = "docs_no_face_shard_{index}_v3.jsonl"
# [V] record key order of v1.0; v1.1 adds could_have_url_duplicate [I]
V1_0_KEYS = ["url", "text_list", "image_info", "similarity_matrix"]
V1_1_KEYS = [*V1_0_KEYS, "could_have_url_duplicate"]
IMAGE_INFO_KEYS = ["image_name", "raw_url", "matched_text_index", "matched_sim", "face_detections"]


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    """The MMC4 repo of a test-scale world (built offline: the image URLs only need a base)."""
    from vila_assets.sample_world.sources import SourceContext

    root = tmp_path_factory.mktemp("mmc4-layout") / "hub"
    world_mmc4.build(SourceContext(root, "http://127.0.0.1:9", scale="test"))
    return root


def _shards(hub_root) -> dict[int, str]:
    files = listing(hub_root, MMC4_CORE_FF.repo_id)
    return {int(m[1]): f for f in files if (m := re.fullmatch(rf"(?:[^/]+/)?{SHARD}", f))}


def _docs(hub_root, path: str) -> list[dict]:
    with zipfile.ZipFile(hub_root / "datasets" / MMC4_CORE_FF.repo_id / path) as zf:
        (member,) = zf.infolist()
        return [json.loads(line) for line in zf.read(member).decode().splitlines()
                if line.strip() and line.startswith("{") and line.rstrip().endswith("}")]


def test_repo_listing_matches_the_real_repo(hub_root):
    assert layout_problems(hub_root, MMC4_CORE_FF) == []


def test_each_zip_holds_one_deflated_jsonl_named_like_it(hub_root):
    for index, path in _shards(hub_root).items():
        with zipfile.ZipFile(hub_root / "datasets" / MMC4_CORE_FF.repo_id / path) as zf:
            infos = zf.infolist()
        assert [i.filename for i in infos] == [ZIP_MEMBER.format(index=index)], path
        assert infos[0].compress_type == zipfile.ZIP_DEFLATED


def test_shard_numbers_have_gaps_like_the_real_set(hub_root):
    indices = sorted(_shards(hub_root))
    gaps = [i for i in range(indices[-1] + 1) if i not in indices]
    assert len(gaps) >= 2, "the real set lacks 14 indices, core-ff two more: the world must have gaps"
    assert gaps == list(world_mmc4.GAPS["test"])


def test_records_have_the_real_shape_in_both_versions(hub_root):
    versions = set()
    for path in _shards(hub_root).values():
        docs = _docs(hub_root, path)
        keys = {tuple(d) for d in docs if "text_list" in d}
        assert len(keys) == 1, f"{path}: one release per file, got {keys}"
        (order,) = keys
        assert list(order) in (V1_0_KEYS, V1_1_KEYS), f"{path}: key order {order}"
        versions.add(len(order))
        for d in docs:
            assert all(list(info) == IMAGE_INFO_KEYS for info in d["image_info"]), path
            assert all(info["face_detections"] is None for info in d["image_info"])
            if "text_list" in d:
                assert len(d["similarity_matrix"]) == len(d["image_info"]), path
                assert all(len(row) == len(d["text_list"]) for row in d["similarity_matrix"]), path
    assert versions == {4, 5}, "the world must carry v1.0 (4-key) and v1.1 (5-key) records"


def test_the_world_plants_one_url_in_two_slots(hub_root):
    reused = [d for path in _shards(hub_root).values() for d in _docs(hub_root, path)
              if len({i["raw_url"] for i in d["image_info"]}) < len(d["image_info"])]
    assert reused, "a doc using one image URL in two slots"
