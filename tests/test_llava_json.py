"""LLaVA JSON core: streaming read/write equal json.load / write_json, validation names file + record id."""

import json
import random

import pytest
from PIL import Image

from vila_assets.core.llava_json import (
    JsonArrayError,
    image_problems,
    image_root,
    iter_json_array,
    loader_samples,
    validate_file,
    write_json_array,
)
from vila_assets.core.vila_format import RecordError, write_json


def _records(n=300, seed=1):
    rng = random.Random(seed)
    return [
        {
            "id": f"r{i}",
            "image": f"coco/train2017/{i:012d}.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\n" + "Q ü [ ] { } \" \\ " * rng.randint(0, 30)},
                {"from": "gpt", "value": "A 🙂" * rng.randint(0, 30)},
            ],
            "n": rng.random(),
            "big": 12345678901234567890,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("chunk", [1, 3, 17, 4096, 1 << 20])
def test_streaming_reader_equals_json_load_for_any_chunk_size(tmp_path, chunk):
    recs = _records(60)
    p = tmp_path / "a.json"
    p.write_text(json.dumps(recs, indent=1, ensure_ascii=chunk % 2 == 0), encoding="utf-8")
    assert list(iter_json_array(p, chunk_size=chunk)) == json.loads(p.read_text(encoding="utf-8"))


def test_streaming_writer_is_byte_identical_to_write_json(tmp_path):
    recs = _records()
    write_json_array(tmp_path / "stream.json", iter(recs))
    write_json(tmp_path / "whole.json", recs)
    assert (tmp_path / "stream.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert list(iter_json_array(tmp_path / "stream.json")) == recs


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"id": 1}', "expected a JSON array"),
        ('[{"id": 1}, {"id": ]', "element 1"),
        ('[{"id": 1}', "without closing ']'"),
        ('[1] [2]', "trailing data"),
        ('[1 2]', "expected ',' or ']' after element 0"),
    ],
)
def test_malformed_json_names_the_file_and_element(tmp_path, text, message):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(JsonArrayError) as err:
        list(iter_json_array(p, chunk_size=4))
    assert str(p) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    "data, message",
    [
        (b'["\xc3\xbc", "\xf0\x9f', "file ends inside a UTF-8 sequence"),
        (b'["ok", "\xff"]', "not UTF-8 near character"),
    ],
)
def test_bytes_that_are_not_utf8_name_the_file(tmp_path, data, message):
    p = tmp_path / "bytes.json"
    p.write_bytes(data)
    with pytest.raises(JsonArrayError) as err:
        list(iter_json_array(p, chunk_size=2))
    assert str(p) in str(err.value) and message in str(err.value)


def test_reader_hands_every_byte_to_on_bytes_and_drops_consumed_text(tmp_path):
    """``on_bytes`` sees the file exactly (hashing while parsing); elements past the first chunk still parse
    after the consumed prefix is dropped."""
    import hashlib

    recs = _records(200)
    p = write_json(tmp_path / "big.json", recs)
    h = hashlib.sha256()
    assert list(iter_json_array(p, chunk_size=512, on_bytes=h.update)) == recs
    assert h.hexdigest() == hashlib.sha256(p.read_bytes()).hexdigest()


def test_a_malformed_element_longer_than_the_limit_is_not_read_to_the_end(tmp_path):
    p = tmp_path / "long.json"
    p.write_text('[{"id": 1}, {"id": ' + " " * 10_000 + "x}]")
    seen = []
    with pytest.raises(JsonArrayError, match="element 1 at character 12 is not valid JSON"):
        list(iter_json_array(p, chunk_size=64, max_element_chars=100, on_bytes=seen.append))
    assert sum(map(len, seen)) < p.stat().st_size // 10


def test_malformed_conversations_rejected_with_file_and_record_id(tmp_path):
    recs = _records(5)
    recs[3]["conversations"] = [{"from": "human", "value": "hi"}, {"from": "human", "value": "again"}]
    p = tmp_path / "mix.json"
    write_json(p, recs)
    with pytest.raises(RecordError) as err:
        validate_file(p, strict=True)
    msg = str(err.value)
    assert str(p) in msg and "record #3" in msg and "'r3'" in msg and "turn 1 is from 'human'" in msg
    report = validate_file(p, strict=False)
    assert (report.records, report.valid, report.invalid) == (5, 4, 1)
    assert "record #3" in report.problems[0]


def test_report_counts_roots_duplicates_and_presence(tmp_path):
    recs = _records(4)
    recs.append({**recs[0], "id": "copy"})  # identical conversation under another id
    recs.append({"id": "t", "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]})
    recs.append({**recs[1], "id": "g", "image": "gqa/images/n1.jpg"})
    p = tmp_path / "m.json"
    write_json(p, recs)
    folder = tmp_path / "data"
    (folder / "coco/train2017").mkdir(parents=True)
    (folder / "coco/train2017/000000000000.jpg").write_bytes(b"x")
    report = validate_file(p, image_folder=folder)
    assert report.duplicate_conversations == 1 and report.text_only == 1
    presence = {r.root: (r.referenced, r.present, r.root_exists) for r in report.presence}
    assert presence == {"coco/train2017": (5, 2, True), "gqa/images": (1, 0, False)}
    assert report.images_missing == 4


def test_image_roots():
    assert image_root("coco/train2017/1.jpg") == "coco/train2017"
    assert image_root("vg/VG_100K_2/1.jpg") == "vg/VG_100K_2"
    assert image_root("llava/llava_pretrain/images/00000/1.jpg") == "llava/llava_pretrain/images"
    assert image_root("other/place/deep/x.jpg") == "other/place"


def test_image_problems_finds_missing_and_truncated(tmp_path):
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "html.jpg").write_bytes(b"<html>404</html>")
    got = image_problems(tmp_path, ["ok.jpg", "cut.jpg", "html.jpg", "gone.jpg"])
    assert set(got) == {"cut.jpg", "html.jpg", "gone.jpg"}
    assert got["gone.jpg"] == "missing" and got["cut.jpg"].startswith("undecodable")


def test_loader_samples_fails_where_vila_would(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    good = [{"id": "1", "image": "a.jpg", "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]}]
    write_json(tmp_path / "g.json", good)
    assert list(loader_samples(tmp_path / "g.json", tmp_path)) == [{"id": "1", "images": [(8, 8)], "turns": 2}]
    write_json(tmp_path / "b.json", [{**good[0], "image": "missing.jpg"}])
    with pytest.raises(FileNotFoundError):
        list(loader_samples(tmp_path / "b.json", tmp_path))
