"""M3IT tasks (core.m3it) read straight from the task files of the miniature repo (no hub needed)."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vila_assets.core import m3it
from vila_assets.core.vflan import PerFileLayout, loader_turns
from vila_assets.core.vila_format import decode_base64_image
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import m3it as m3it_source


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    hub = tmp_path_factory.mktemp("hub")
    ctx = SourceContext(hub, "http://127.0.0.1:9", seed=0, scale="test")
    m3it_source.build(ctx)
    return ctx.repo_dir(m3it.M3IT_REPO)


@pytest.fixture(scope="module")
def converted(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    layout = PerFileLayout(out / "pkl", out / "pq")
    summaries = {
        t.name: m3it.convert_task(t, repo / t.train_file(), repo / t.instructions_file(), layout) for t in m3it.TASKS
    }
    return layout, summaries


def _load(layout, t: m3it.M3ITTask) -> list[dict]:
    with open(layout.pickle(t.stem), "rb") as fh:
        return pickle.load(fh)


def test_the_fourteen_vila_tasks_produce_their_files(converted):
    layout, summaries = converted
    assert sorted(p.name for p in layout.pickle_dir.iterdir()) == sorted(f"{s}.pkl" for s in m3it.TASK_STEMS)
    assert "captioning_textcap_train" in m3it.TASK_STEMS and "vqa_vqa-v2_train" in m3it.TASK_STEMS
    assert not any("science" in s for s in m3it.TASK_STEMS)  # "nosqa"
    for t in m3it.TASKS:
        assert summaries[t.name].records > 0
        assert len(_load(layout, t)) == summaries[t.name].records


def test_question_is_instruction_plus_inputs_without_separator(repo, converted):
    layout, _ = converted
    t = m3it.task("vqa-v2")
    instructions = json.loads((repo / t.instructions_file()).read_text())
    rng = random.Random(1234)  # M3IT.py: random.seed(_SEED) then one random.choice per train item
    raw = [json.loads(line) for line in (repo / t.train_file()).read_text().splitlines()]
    for rec, data in zip(_load(layout, t), raw):
        instruction = rng.choice(instructions)
        assert rec["question"] == instruction + data["question"]
        refused = "sorry" in data["paraphrased_answer"].lower() or "not answerable" in data["paraphrased_answer"].lower()
        assert rec["answer"] == (data["original_answer"] if refused else data["paraphrased_answer"])
        assert rec["image"] == [data["img_str"]]


def test_visual_dialog_text_survives_for_vilas_loader(converted):
    layout, _ = converted
    records = _load(layout, m3it.task("visual-dialog"))
    for rec in records:
        assert "Image Descriptions" in rec["question"]
        assert ".\nImage Descriptions: " in rec["question"]  # instruction ends in "\n": no separator added
        turns = loader_turns(rec)
        assert turns[0][0].startswith("<image>\n")
        assert turns[-1][1] == rec["answer"]
        assert all("\nQuestion: " not in q for q, _ in turns)
    assert any(len(loader_turns(r)) == 3 for r in records) and any(len(loader_turns(r)) == 2 for r in records)


def test_images_are_base64_jpegs_vila_can_open(converted):
    layout, _ = converted
    by_name = {t.name: _load(layout, t) for t in m3it.TASKS}
    assert all(len(r["image"]) == 8 for r in by_name["ivqa"])  # video frames
    assert all(len(r["image"]) == 2 for r in by_name["nlvr"])
    for records in by_name.values():
        for rec in records:
            for s in rec["image"]:
                assert decode_base64_image(s).mode == "RGB"


def test_bad_records_are_counted_with_file_line_and_reason(converted):
    _, summaries = converted
    invalid = sorted((r.file, r.line, r.reason) for s in summaries.values() for r in s.invalid)
    assert invalid == [
        ("data/captioning/textcap/train.jsonl", 3, "bad_base64"),
        ("data/reasoning/clevr/train.jsonl", 4, "bad_json"),
        ("data/vqa/gqa/train.jsonl", 2, "undecodable_image"),
    ]
    s = summaries["textcap"]
    assert s.lines == s.records + len(s.invalid)
    (gqa,) = summaries["gqa"].invalid
    # the same words every run: Pillow's message names the buffer without its address
    assert gqa.detail == "image 0: UnidentifiedImageError: cannot identify image file <_io.BytesIO object>"


def test_invalid_list_is_a_table_of_file_line_and_reason(converted, tmp_path):
    _, summaries = converted
    invalid = [r for s in summaries.values() for r in s.invalid]
    path = m3it.write_invalid_list(invalid, tmp_path / "m3it_invalid.parquet")
    assert pq.read_table(path).to_pylist() == [vars(r) for r in invalid]
    assert pq.read_table(m3it.write_invalid_list([], tmp_path / "none.parquet")).num_rows == 0


def test_missing_field_is_reported_not_dropped(tmp_path):
    t = m3it.task("textcap")
    (tmp_path / "train.jsonl").write_text(json.dumps({"caption": "x"}) + "\n")
    (tmp_path / "instructions.json").write_text(json.dumps(["Describe."]))
    s = m3it.convert_task(t, tmp_path / "train.jsonl", tmp_path / "instructions.json", PerFileLayout(tmp_path / "p", tmp_path / "q"))
    assert s.records == 0
    assert [(r.line, r.reason, r.detail) for r in s.invalid] == [(1, "missing_field", "missing field 'image_base_url'")]


def test_conversion_is_byte_identical_on_rerun(repo, converted, tmp_path):
    layout, _ = converted
    again = PerFileLayout(tmp_path / "p", tmp_path / "q")
    t = m3it.task("visual-dialog")
    m3it.convert_task(t, repo / t.train_file(), repo / t.instructions_file(), again)
    assert again.pickle(t.stem).read_bytes() == layout.pickle(t.stem).read_bytes()
