"""The sample world's kakaobrain/coyo-700m against the real repo's layout and schema, transcribed from the
upstream reference (section 3): a world that drifts back to our own assumptions fails here."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.upstream_layout import RepoLayout, layout_problems, listing
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import coyo as coyo_world

UUID = "17da4908-939c-46e5-91d0-15f256041956"

COYO_700M = RepoLayout(
    "kakaobrain/coyo-700m",
    required=("README.md", ".gitattributes", "data/_SUCCESS",
              *(f"data/part-{i:05d}-{UUID}-c000.snappy.parquet" for i in range(128))),
    only=(r"README\.md", r"\.gitattributes", r"data/_SUCCESS", rf"data/part-\d{{5}}-{UUID}-c000\.snappy\.parquet"),
    notes={
        "data/_SUCCESS": "0 B Spark marker beside the shards [V commit 54ee2d8]",
        "data/part-*": "128 files, one uuid, snappy parquet [V commit page, blob part-00002]",
    },
)

# Columns in the release's order with their parquet types: id long, url/text string, width/height int,
# image_phash string, five int counts, six float scores (Spark types [V]; physical int64/int32/FLOAT and the
# order [I] from the preview table).
COLUMNS = [
    ("id", "int64"), ("url", "string"), ("text", "string"), ("width", "int32"), ("height", "int32"),
    ("image_phash", "string"), ("text_length", "int32"), ("word_count", "int32"), ("num_tokens_bert", "int32"),
    ("num_tokens_gpt", "int32"), ("num_faces", "int32"), ("clip_similarity_vitb32", "float"),
    ("clip_similarity_vitl14", "float"), ("nsfw_score_opennsfw2", "float"), ("nsfw_score_gantman", "float"),
    ("watermark_score", "float"), ("aesthetic_score_laion_v2", "float"),
]


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory) -> Path:
    """The COYO repo exactly as the sample world builds it (no servers are needed to build it)."""
    root = tmp_path_factory.mktemp("coyo-layout")
    coyo_world.build(SourceContext(root, "http://127.0.0.1:9", seed=0, scale="test"))
    return root


def test_repo_listing_matches_the_real_repo(hub_root):
    assert layout_problems(hub_root, COYO_700M) == []
    repo = hub_root / "datasets" / COYO_700M.repo_id
    assert (repo / "data" / "_SUCCESS").stat().st_size == 0
    assert len(listing(hub_root, COYO_700M.repo_id)) == 131


def test_every_shard_has_the_17_columns_in_order_with_the_real_types(hub_root):
    repo = hub_root / "datasets" / COYO_700M.repo_id
    for i in range(128):
        schema = pq.read_schema(repo / f"data/part-{i:05d}-{UUID}-c000.snappy.parquet")
        assert [(f.name, str(f.type)) for f in schema] == COLUMNS, i


def test_the_layout_table_catches_drift(tmp_path):
    """The table is not vacuous: an invented file or a missing marker is reported."""
    repo = tmp_path / "datasets" / COYO_700M.repo_id
    (repo / "data").mkdir(parents=True)
    for name in ("README.md", ".gitattributes", f"data/part-00000-{UUID}-c000.snappy.parquet", "data/index.json"):
        (repo / name).write_text("x")
    problems = layout_problems(tmp_path, COYO_700M)
    assert f"{COYO_700M.repo_id}: missing data/_SUCCESS" in problems
    assert f"{COYO_700M.repo_id}: unexpected file data/index.json" in problems
    assert sum("missing data/part-" in p for p in problems) == 127
