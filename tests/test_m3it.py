"""M3IT tasks (core.m3it) read straight from the task files of the miniature repo (no hub needed): the
per-task file names and field readings, both policies, and errors that name file and line."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vila_assets.core import m3it
from vila_assets.core.policy import Policy
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


def _convert(tmp_path, name: str, lines: list, policy=Policy.curated, instructions=("Describe.",)):
    t = m3it.task(name)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.jsonl").write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    (tmp_path / "instr.json").write_text(json.dumps(list(instructions)))
    layout = PerFileLayout(tmp_path / "p", tmp_path / "q")
    s = m3it.convert_task(t, tmp_path / "train.jsonl", tmp_path / "instr.json", layout, policy=policy)
    with open(layout.pickle(t.stem), "rb") as fh:
        return s, pickle.load(fh)


def test_missing_field_is_reported_not_dropped(tmp_path):
    s, records = _convert(tmp_path, "textcap", [{"caption": "x"}])
    assert s.records == 0 and records == []
    assert [(r.line, r.reason) for r in s.invalid] == [(1, "missing_field")]
    assert "image_base_url" in s.invalid[0].detail and "image_base64_str" in s.invalid[0].detail


def test_each_task_reads_its_own_files_from_the_real_layout(repo):
    assert m3it.task("image-paragraph-captioning").train_file() == (
        "data/captioning/image_paragraph_captioning/image_paragraph_captioning_train.jsonl")
    assert m3it.task("viquae").train_file() == "data/vqa/viquae/train_v2.jsonl"  # not the old train.jsonl
    assert m3it.task("vqa-v2").folder == "data/vqa/vqav2" and m3it.task("visual-mrc").folder == "data/reasoning/visual_mrc"
    singular = {t.name for t in m3it.TASKS if t.instructions == "instruction.json"}
    assert singular == {"image-paragraph-captioning", "gqa", "ocr-vqa", "st-vqa"}
    for t in m3it.TASKS:
        assert (repo / t.train_file()).is_file() and (repo / t.instructions_file()).is_file(), t.name


def test_viquae_uses_the_v2_file_and_its_paraphrased_answer(repo, converted):
    layout, _ = converted
    t = m3it.task("viquae")
    raw = [json.loads(line) for line in (repo / t.train_file()).read_text().splitlines()]
    records = _load(layout, t)
    assert [r["answer"] for r in records] == [d["paraphrased_answer"] for d in raw]
    assert [r["image"] for r in records] == [[d["img_str"]] for d in raw]
    assert not any(r["question"].endswith(("OLD", "old")) or "OLD viquae" in r["question"] for r in records)


def test_docvqa_has_no_original_answer_and_still_maps(repo, converted):
    layout, summaries = converted
    t = m3it.task("docvqa")
    raw = [json.loads(line) for line in (repo / t.train_file()).read_text().splitlines()]
    assert all("original_answer" not in d for d in raw)
    assert [r["answer"] for r in _load(layout, t)] == [d["answer"] for d in raw]
    assert summaries["docvqa"].invalid == []


@pytest.mark.parametrize("raw, expected", [
    # gqa's schema is unverified upstream: every plausible reading maps
    ({"question": "Q?", "original_answer": "red", "paraphrased_answer": "It is red.", "img_str": "IMG"},
     ("Q?", "It is red.", ["IMG"])),
    ({"question": "Q?", "original_answer": "red", "paraphrased_answer": "Sorry, not answerable.", "img_str": "IMG"},
     ("Q?", "red", ["IMG"])),
    ({"question": "Q?", "answer": "red", "image_str": "IMG"}, ("Q?", "red", ["IMG"])),
    ({"input": "Q?", "output": "red", "image_base64_str": ["A", "B"]}, ("Q?", "red", ["A", "B"])),
    ({"question": "Q?", "paraphrased_answer": "It is red.", "image": "IMG"}, ("Q?", "It is red.", ["IMG"])),
])
def test_unverified_schemas_accept_every_plausible_reading(raw, expected):
    assert m3it.task("gqa").fields.map(raw) == expected


def test_verified_schemas_read_exactly_their_keys():
    assert m3it.task("viquae").fields.map({"question": "Q", "paraphrased_answer": "P", "img_str": "I"}) == ("Q", "P", ["I"])
    with pytest.raises(m3it.FieldError, match="missing field 'paraphrased_answer'"):
        m3it.task("viquae").fields.map({"question": "Q", "answer": "A", "img_str": "I"})
    with pytest.raises(m3it.FieldError, match="missing field 'image_str'"):
        m3it.task("docvqa").fields.map({"question": "Q", "answer": "A", "img_str": "I"})


def test_vila_keeps_undecodable_images_without_ids_and_lists_them(tmp_path, repo):
    good = json.loads((repo / m3it.task("gqa").train_file()).read_text().splitlines()[0])
    lines = [good, {**good, "img_str": "not base64!"}, '{"broken', good]
    vila, vila_records = _convert(tmp_path / "v", "gqa", lines, Policy.vila, ("A", "B", "C"))
    curated, curated_records = _convert(tmp_path / "c", "gqa", lines, Policy.curated, ("A", "B", "C"))
    assert [list(r) for r in vila_records] == [["question", "answer", "image"]] * 3  # VILA's keys, no id
    assert [(r.line, r.reason, r.kept) for r in vila.invalid] == [(2, "bad_base64", True), (3, "bad_json", False)]
    assert [(r.line, r.reason, r.kept) for r in curated.invalid] == [(2, "bad_base64", False), (3, "bad_json", False)]
    assert [r["id"] for r in curated_records] == ["vqa_gqa_train_00000000", "vqa_gqa_train_00000001"]
    # the same instruction draws: the bad-image line drew one (it mapped), the broken line did not
    rng = random.Random(m3it.M3IT_SEED)
    draws = [rng.choice(["A", "B", "C"]) for _ in range(3)]
    assert [r["question"][:1] for r in vila_records] == draws
    assert [r["question"][:1] for r in curated_records] == [draws[0], draws[2]]


def test_a_line_that_is_not_utf8_is_listed_with_its_line(tmp_path):
    t = m3it.task("textcap")
    (tmp_path / "train.jsonl").write_bytes(b'{"caption": "\xff\xfe"}\n')
    (tmp_path / "instr.json").write_text(json.dumps(["Describe."]))
    s = m3it.convert_task(t, tmp_path / "train.jsonl", tmp_path / "instr.json", PerFileLayout(tmp_path / "p", tmp_path / "q"))
    assert [(r.file, r.line, r.reason) for r in s.invalid] == [("data/captioning/textcap/train.jsonl", 1, "bad_json")]


def test_a_bad_instruction_file_is_named(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "instr.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match=r"data/vqa/gqa/instruction\.json: expected a non-empty JSON list"):
        m3it.convert_task(m3it.task("gqa"), tmp_path / "train.jsonl", tmp_path / "instr.json",
                          PerFileLayout(tmp_path / "p", tmp_path / "q"))


def test_conversion_is_byte_identical_on_rerun(repo, converted, tmp_path):
    layout, _ = converted
    again = PerFileLayout(tmp_path / "p", tmp_path / "q")
    t = m3it.task("visual-dialog")
    m3it.convert_task(t, repo / t.train_file(), repo / t.instructions_file(), again)
    assert again.pickle(t.stem).read_bytes() == layout.pickle(t.stem).read_bytes()
