"""The sample world's FLAN and M3IT repos against tables transcribed from the real repos' listings
(upstream-sources.md §1 M3IT and §4 FLAN; [V] verified, [I] inferred), so the world cannot drift back to
our own assumptions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.upstream_layout import RepoLayout, layout_problems, listing
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import flan as flan_world
from vila_assets.sample_world.sources import m3it as m3it_world

# --- FLAN (§4) -------------------------------------------------------------------------------------------

FLAN_DATA_FOLDERS = (  # [V] tree pages
    "cot_fsopt_data", "cot_zsopt_data", "dialog_fsopt_data", "dialog_zsopt_data", "flan_fsnoopt_data",
    "flan_fsopt_data", "flan_zsnoopt_data", "flan_zsopt_data", "niv2_fsopt_data", "niv2_zsopt_data",
    "t0_fsnoopt_data", "t0_fsopt_data", "t0_zsnoopt_data", "t0_zsopt_data",
)
FLAN_TOP_FILES = (  # [V] the unused JSONs plus README.md, OOFlanLogo.png, .gitattributes
    "cot_zs_submix_data.json", "flan2021_zsnoopt_submix_data.json", "flan2021_zsopt_submix_data.json",
    "niv2_zs_submix_data.json", "t0_zsnoopt_submix_data.json", "t0_zsopt_submix_data.json",
    "README.md", "OOFlanLogo.png", ".gitattributes",
)
FLAN_COLUMNS = ["inputs", "targets", "_template_idx", "_task_source", "_task_name", "_template_type"]
_PART = r"part\.(0|[1-9][0-9]*)\.parquet"  # no zero padding [V]

FLAN_LAYOUT = RepoLayout(
    "Open-Orca/FLAN",
    required=(*FLAN_TOP_FILES, "cot_fsopt_data/part.0.parquet",
              *(f"re:{f}/{_PART}" for f in FLAN_DATA_FOLDERS),
              r"re:[a-z0-9_]+_data/part\.1[0-9]\.parquet"),  # a folder with > 10 parts: string order matters
    forbidden=(r"re:OpenOrcaFLAN/.*", r"re:.*_data/part\.0[0-9]+\.parquet"),  # early revisions only; padding
    only=(*(f"{f}/{_PART}" for f in FLAN_DATA_FOLDERS), *(name.replace(".", r"\.") for name in FLAN_TOP_FILES)),
    notes={"cot_fsopt_data/part.0.parquet": "[V] the folder's only part (155 MB)"},
)

# --- M3IT (§1) -------------------------------------------------------------------------------------------

M3IT_ROOT = (".gitattributes", ".gitignore", "M3IT.py", "README.md")  # [V] tree/main
# folder -> files at main, as the per-task table lists them ([V] folder listings)
M3IT_TASKS: dict[str, tuple[str, ...]] = {
    "data/captioning/image_paragraph_captioning": (
        "image_paragraph_captioning_train.jsonl", "image_paragraph_captioning_val.jsonl",
        "image_paragraph_captioning_test.jsonl", "instruction.json"),
    "data/captioning/textcap": ("train.jsonl", "val.jsonl", "instructions.json"),
    "data/generation/multi30k": ("train.jsonl", "val.jsonl", "test.jsonl", "instructions.json"),
    "data/generation/visual_dialog": ("train.jsonl", "val.jsonl", "test.jsonl", "train_2023-10-09.jsonl",
                                      "test_2023-10-10.jsonl", "instructions.json"),
    "data/reasoning/clevr": ("train.jsonl", "val.jsonl", "train_2023-10-07.jsonl", "val_2023-10-07.jsonl",
                             "instructions.json"),
    "data/reasoning/nlvr": ("train.jsonl", "val.jsonl", "test.jsonl", "instructions.json"),
    "data/reasoning/visual_mrc": ("train.jsonl", "val.jsonl", "test.jsonl", "instructions.json"),
    "data/vqa/docvqa": ("train.jsonl", "val.jsonl", "instructions.json"),
    "data/vqa/gqa": ("train.jsonl", "validation.jsonl", "instruction.json"),
    "data/vqa/ivqa": ("train.jsonl", "val.jsonl", "test.jsonl", "README.md", "instructions.json"),
    "data/vqa/ocr-vqa": ("train.jsonl", "train_new.jsonl", "validation.jsonl", "instruction.json"),
    "data/vqa/st-vqa": ("train.jsonl", "test.jsonl", "instruction.json"),
    "data/vqa/viquae": ("train_v2.jsonl", "validation_v2.jsonl", "test_v2.jsonl", "train.jsonl",
                        "validation.jsonl", "test.jsonl", "instructions.json"),
    "data/vqa/vqav2": ("train.jsonl", "val.jsonl", "instructions.json"),
}
# [I] one of the task folders VILA does not read ("nosqa"); its file names are not in the reference
M3IT_OTHER_TASK = r"data/reasoning/science_qa/(train|val|test)\.jsonl|data/reasoning/science_qa/instructions\.json"

M3IT_LAYOUT = RepoLayout(
    "MMInstruction/M3IT",
    required=(*M3IT_ROOT, *(f"{folder}/{name}" for folder, names in M3IT_TASKS.items() for name in names)),
    forbidden=(
        "data/captioning/image_paragraph_captioning/train.jsonl",  # the train file carries the task name
        r"re:data/vqa/vqa-v2/.*", r"re:data/generation/visual-dialog/.*", r"re:data/reasoning/visual-mrc/.*",
        *(f"data/{p}/instructions.json" for p in ("captioning/image_paragraph_captioning", "vqa/gqa", "vqa/ocr-vqa",
                                                  "vqa/st-vqa")),
        r"re:.*/instructions\.jsonl",  # renamed upstream long ago
        "data/vqa/gqa/val.jsonl", "data/vqa/ocr-vqa/val.jsonl", "data/vqa/viquae/val.jsonl",  # "validation"
        "data/captioning/textcap/test.jsonl", r"re:data/vqa/st-vqa/val(idation)?\.jsonl",  # no such split
    ),
    only=(*(name.replace(".", r"\.") for name in M3IT_ROOT),
          *(f"{folder}/{name}".replace(".", r"\.") for folder, names in M3IT_TASKS.items() for name in names),
          M3IT_OTHER_TASK),
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """Both fake repos at test scale, written as the sample world writes them (no server needed)."""
    root = tmp_path_factory.mktemp("hub")
    ctx = SourceContext(root, "http://127.0.0.1:9", seed=0, scale="test")
    flan_world.build(ctx)
    m3it_world.build(ctx)
    return root


def _jsonl(hub: Path, rel: str) -> list[dict]:
    return [json.loads(line) for line in (hub / "datasets/MMInstruction/M3IT" / rel).read_text().splitlines()
            if line.strip().startswith("{") and line.strip().endswith("}")]


@pytest.mark.parametrize("layout", [FLAN_LAYOUT, M3IT_LAYOUT], ids=lambda layout: layout.repo_id)
def test_fake_repo_matches_the_real_listing(hub, layout):
    assert layout_problems(hub, layout) == []


def test_flan_folders_hold_only_parquet_parts_with_flans_columns(hub):
    files = listing(hub, "Open-Orca/FLAN")
    folders = sorted({f.split("/")[0] for f in files if "/" in f})
    assert folders == sorted(FLAN_DATA_FOLDERS)
    assert [f for f in files if f.startswith("cot_fsopt_data/")] == ["cot_fsopt_data/part.0.parquet"]
    for rel in (f for f in files if "/" in f):
        assert pq.ParquetFile(hub / "datasets/Open-Orca/FLAN" / rel).schema_arrow.names == FLAN_COLUMNS, rel
    # the folder with > 10 parts sorts part.10 before part.2 as strings
    many = sorted(f.split("/")[1] for f in files if f.startswith("flan_fsopt_data/"))
    assert many.index("part.10.parquet") < many.index("part.2.parquet")


def test_m3it_raw_fields_differ_per_task_as_upstream(hub):
    # [V] docvqa: question, image_str, answer; no original_answer
    assert {tuple(sorted(r)) for r in _jsonl(hub, "data/vqa/docvqa/train.jsonl")} == {("answer", "image_str", "question")}
    # [V] viquae base config reads the v2 files: question, paraphrased_answer, img_str
    assert {tuple(sorted(r)) for r in _jsonl(hub, "data/vqa/viquae/train_v2.jsonl")} == {
        ("img_str", "paraphrased_answer", "question")}
    old = _jsonl(hub, "data/vqa/viquae/train.jsonl")  # the decoy: another schema and other records
    assert old and all("paraphrased_answer" not in r for r in old)
    # [V] image-paragraph captioning: the caption is `output`
    assert all("output" in r for r in _jsonl(hub, "data/captioning/image_paragraph_captioning/"
                                                  "image_paragraph_captioning_train.jsonl"))
    # rephrased configs: meta.{instruction, inputs, image_base64_str} + answer
    for r in _jsonl(hub, "data/generation/visual_dialog/train_2023-10-09.jsonl"):
        assert set(r) == {"meta", "answer"} and set(r["meta"]) == {"instruction", "inputs", "image_base64_str"}


def test_m3it_oddities(hub):
    repo = hub / "datasets/MMInstruction/M3IT"
    ocr = repo / "data/vqa/ocr-vqa"
    assert (ocr / "train_new.jsonl").read_bytes() == (ocr / "train.jsonl").read_bytes()  # one LFS object [V]
    assert "data/generation/multi30k/instructions.json filter=lfs" in (repo / ".gitattributes").read_text()  # [V]
    for folder, names in M3IT_TASKS.items():
        (instructions,) = [n for n in names if n.startswith("instruction")]
        data = json.loads((repo / folder / instructions).read_text())
        assert isinstance(data, list) and data and all(isinstance(s, str) for s in data)  # [V] array of strings
