"""Hostile inputs: random and adversarial records for every parser never crash a shard, never produce a
loader-invalid output, and every error names the file and the line or record.

Property-based (hypothesis, derandomized so CI sees the same examples every run). Each test writes its
own small files; nothing here needs the sample world.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vila_assets.core import coyo, flan, m3it, mmc4, mmc4_merge
from vila_assets.core.llava_json import JsonArrayError, check_records, iter_json_array
from vila_assets.core.policy import Policy
from vila_assets.core.sharegpt4v import FilterRules, filter_records
from vila_assets.core.vflan import PerFileLayout
from vila_assets.core.vila_format import RecordError, validate_conversation_record, write_pickle_shard

EXAMPLES = 150
FAST = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _jpeg(size=(8, 8), colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


JPEG = _jpeg()

# --- strategies ---------------------------------------------------------------------------------------

# text with the awkward parts of Unicode: lone surrogates (valid in JSON as "\ud800"), NUL, RTL, emoji
hostile_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=12) | st.sampled_from(
    ["", "\ud800", "a\x00b", "../../etc/passwd", "<image>", "\u202e", "😀" * 3, "x" * 300])
json_scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | hostile_text
json_value = st.recursive(json_scalar, lambda kids: st.lists(kids, max_size=4)
                          | st.dictionaries(hostile_text, kids, max_size=4), max_leaves=12)


@st.composite
def mmc4_doc(draw):
    """A plausible MMC4 doc (4 keys as in core, 5 with ``could_have_url_duplicate``), then mutated."""
    n_text = draw(st.integers(0, 4))
    texts = draw(st.lists(hostile_text, min_size=n_text, max_size=n_text))
    n_img = draw(st.integers(0, 3))
    urls = st.sampled_from(["http://a.example/x.jpg", "http://b.example/y", "http://c.example/p.a/b",
                            "http://d.example/\ud800.jpg", "http://e.example/" + "z" * 300 + ".jpg", "", "  "])
    infos = [{"raw_url": draw(urls | hostile_text),
              "matched_text_index": draw(st.integers(-3, 5) | st.sampled_from([2**63, -(2**63), 2**80, 1.0, True,
                                                                                "0", None])),
              "matched_sim": draw(st.floats())} for _ in range(n_img)]
    rows = draw(st.integers(0, n_img + 1))
    sim = [draw(st.lists(st.floats() | st.none() | st.sampled_from(["x", [1]]), max_size=n_text + 1))
           for _ in range(rows)]
    doc = {"text_list": texts, "image_info": infos, "similarity_matrix": sim, "url": draw(hostile_text | st.none())}
    if draw(st.booleans()):
        doc["could_have_url_duplicate"] = draw(st.integers(0, 1))
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=2)):
        doc[key] = draw(json_value)  # wrong type (or a lucky right one) in a random field
    return doc


def _line(draw_doc, mode: str, doc) -> bytes:
    raw = json.dumps(doc, ensure_ascii=draw_doc).encode("utf-8", "surrogatepass")
    if mode == "truncated":
        return raw[: len(raw) // 2]
    if mode == "bad_utf8":
        return raw[:5] + b"\xff\xfe\xc3" + raw[5:]
    return raw


mmc4_line = st.tuples(st.booleans(), st.sampled_from(["ok"] * 6 + ["truncated", "bad_utf8"]),
                      mmc4_doc() | json_value).map(lambda t: _line(*t)) | st.binary(max_size=40) | st.just(b"")


def _write_shard(tmp: Path, lines: list[bytes], zipped: bool) -> Path:
    body = b"\n".join(lines) + b"\n"
    if not zipped:
        path = tmp / "docs_shard_7_v2.jsonl"
        path.write_bytes(body)
        return path
    path = tmp / "docs_shard_7_v2.jsonl.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("docs_shard_7_v2.jsonl", body)
    return path


def _samples(keys: list[str], urls: dict[str, str], fates: list[bool]) -> dict[str, dict]:
    """A crawl result per key: ok with a small JPEG (orig size 400x300: VILA's resize applies) or failed."""
    out = {}
    for n, key in enumerate(keys):
        ok = fates[n % len(fates)] if fates else True
        out[key] = {"url": urls[key], "status": "ok" if ok else "failed_download", "width": 8, "height": 8,
                    "orig_width": 400, "orig_height": 300, "image": JPEG if ok else None}
    return out


# --- MMC4 --------------------------------------------------------------------------------------------------


@FAST
@given(lines=st.lists(mmc4_line, max_size=8), zipped=st.booleans(), fates=st.lists(st.booleans(), max_size=4),
       policy=st.sampled_from(list(Policy)))
def test_mmc4_hostile_docs_never_crash_the_shard_and_merge_to_loader_valid_records(lines, zipped, fates, policy):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        shard = _write_shard(tmp, lines, zipped)
        parsed = mmc4.parse_shard(shard, display="docs_shard_7_v2.jsonl")
        prefix = "docs_shard_7_v2.jsonl" + ("!docs_shard_7_v2.jsonl" if zipped else "")
        assert len(parsed.rows) == sum(1 for raw in lines for part in raw.split(b"\n") if part.strip()) or \
            any(b"\r" in raw for raw in lines)  # a bare \r is whitespace to strip() but not a line end
        for row in parsed.rows:
            assert row["where"] == f"{prefix}:{row['line']}"
            assert (row["status"] == "invalid") == (row["reason"] is not None)
        # every downstream step writes what it was given without crashing
        mmc4.write_annotations(parsed, tmp / "annotations.parquet")
        annotations = mmc4.read_annotations(tmp / "annotations.parquet")
        crawl = mmc4.crawl_rows(annotations)
        mmc4.write_parquet(tmp / "crawl_input.parquet", crawl, mmc4.CRAWL_INPUT_SCHEMA)
        samples = _samples([r["key"] for r in crawl], {r["key"]: r["url"] for r in crawl}, fates)
        result = mmc4_merge.merge_shard(annotations, samples, mmc4_merge.rules_for(policy))
        assert result.docs_in == len(parsed.rows)
        assert {r["where"] for r in result.doc_rows} == {r["where"] for r in parsed.rows}
        if result.records:
            write_pickle_shard(tmp / "mmc4", "docs_shard_7_v2", result.records)
        inspection = mmc4_merge.inspect_shard(tmp / "mmc4", "docs_shard_7_v2", expect_pair=bool(result.records))
        assert inspection.problems == []
        assert inspection.n_docs == len(result.records)


@FAST
@given(lines=st.lists(mmc4_line, min_size=1, max_size=6))
def test_mmc4_strict_mode_names_file_and_line_of_the_first_bad_doc(lines):
    with tempfile.TemporaryDirectory() as d:
        shard = _write_shard(Path(d), lines, zipped=False)
        lenient = mmc4.parse_shard(shard)
        bad = lenient.invalid
        if not bad:
            assert len(mmc4.parse_shard(shard, strict=True).rows) == len(lenient.rows)
            return
        with pytest.raises(mmc4.Mmc4FormatError) as err:
            mmc4.parse_shard(shard, strict=True)
        assert str(err.value).startswith(f"{shard.name}:{bad[0]['line']}: ")


def _zip_bytes(members: list[tuple[str, bytes]], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


DOC = json.dumps({"text_list": ["a"], "image_info": [{"raw_url": "http://x/y.jpg", "matched_text_index": 0}],
                  "similarity_matrix": [[0.1]]}).encode()
GOOD_ZIP = _zip_bytes([("docs.jsonl", (DOC + b"\n") * 200)])


@pytest.mark.parametrize("payload, expect", [
    (b"", "not a readable zip"),
    (b"PK\x03\x04garbage", "not a readable zip"),
    (GOOD_ZIP[: len(GOOD_ZIP) // 2], "not a readable zip"),
    (_zip_bytes([]), "expected one .jsonl member"),
    (_zip_bytes([("a.jsonl", DOC), ("b.jsonl", DOC)]), "expected one .jsonl member"),
    (_zip_bytes([("a.jsonl", DOC), ("a.jsonl", DOC)]), "expected one .jsonl member"),
])
def test_mmc4_unreadable_or_odd_zipped_shards_are_refused_naming_the_file(tmp_path, payload, expect):
    shard = tmp_path / "docs_shard_3_v2.jsonl.zip"
    shard.write_bytes(payload)
    with pytest.raises(mmc4.Mmc4FormatError, match=expect) as err:
        mmc4.parse_shard(shard)
    assert str(err.value).startswith("docs_shard_3_v2.jsonl.zip")


def test_mmc4_zip_member_names_are_never_paths(tmp_path):
    """A traversal name inside a shard zip is only read, never written anywhere."""
    shard = tmp_path / "in" / "docs_shard_3_v2.jsonl.zip"
    shard.parent.mkdir()
    shard.write_bytes(_zip_bytes([("../../escaped.jsonl", DOC + b"\n")]))
    parsed = mmc4.parse_shard(shard)
    assert [r["status"] for r in parsed.rows] == ["valid"]
    assert parsed.rows[0]["where"] == "docs_shard_3_v2.jsonl.zip!../../escaped.jsonl:1"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["docs_shard_3_v2.jsonl.zip", "in"]


@FAST
@given(flip=st.integers(0, 10_000), byte=st.integers(1, 255))
@example(flip=324, byte=1)  # regression: a bad local-header offset raised a bare OSError from zipfile
def test_mmc4_corrupt_zip_member_bytes_name_the_file(flip, byte):
    """A flipped byte anywhere in a zipped shard: read fully, or refused naming the file (and line)."""
    data = bytearray(GOOD_ZIP)
    data[flip % len(data)] ^= byte
    with tempfile.TemporaryDirectory() as d:
        shard = Path(d) / "docs_shard_4_v2.jsonl.zip"
        shard.write_bytes(bytes(data))
        try:
            parsed = mmc4.parse_shard(shard)
        except mmc4.Mmc4FormatError as exc:
            assert str(exc).startswith("docs_shard_4_v2.jsonl.zip")
        else:
            assert all(r["where"].startswith("docs_shard_4_v2.jsonl.zip") for r in parsed.rows)


# --- Parquet files (COYO, FLAN) -----------------------------------------------------------------------------


def _parquet_bytes(table: pa.Table, row_group_size: int = 3) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue().to_pybytes()


def _coyo_table(n: int, scores: list[float]) -> pa.Table:
    cols = {}
    for f in coyo.COYO_SCHEMA:
        if pa.types.is_floating(f.type):
            cols[f.name] = pa.array([scores[i % len(scores)] for i in range(n)], f.type)
        elif pa.types.is_integer(f.type):
            cols[f.name] = pa.array(list(range(n)), f.type)
        else:
            cols[f.name] = pa.array([f"s{i}" for i in range(n)], f.type)
    return pa.table(cols)


hostile_floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FAST
@given(n=st.integers(0, 12), scores=st.lists(hostile_floats, min_size=1, max_size=5), cut=st.integers(0, 10_000),
       drop=st.lists(st.sampled_from(coyo.COYO_SCHEMA.names), max_size=2, unique=True))
def test_coyo_hostile_parquet_files_raise_errors_that_name_the_file(n, scores, cut, drop):
    table = _coyo_table(n, scores)
    table = table.drop_columns(drop)
    full = _parquet_bytes(table)
    payload = full if cut % 3 == 0 else full[: cut % max(len(full), 1)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "part-00007.snappy.parquet"
        path.write_bytes(payload)
        name = "data/part-00007-abc.snappy.parquet"
        try:
            report = coyo.validate_shard_schema(path, name)
        except coyo.CoyoSchemaError as exc:
            assert str(exc).startswith(f"{name}: ")
            assert payload != full or drop  # an intact, complete file is never refused
            if payload == full:
                assert all(repr(col) in str(exc) for col in drop)
            return
        assert report.rows == n and not drop and payload == full
        seen = 0
        for offset, batch in coyo.iter_parquet_batches(path, list(coyo.SCORE_COLUMNS), 4, where=name):
            assert offset == seen
            seen += batch.num_rows
            for policy in Policy:
                gate = coyo.passes_gate(coyo.policy_scores(batch, policy), 0.5)
                total = coyo.policy_scores(batch, policy)
                assert not gate[total != total].any()  # NaN never passes the gate
        assert seen == n


@pytest.mark.parametrize("payload", [b"", b"PAR1", b"PAR1" + b"\0" * 36, b"not parquet at all, just text\n"])
def test_coyo_unreadable_files_name_the_file_in_every_reader(tmp_path, payload):
    path = tmp_path / "part-00001.parquet"
    path.write_bytes(payload)
    for call in (lambda: coyo.parquet_rows(path), lambda: coyo.read_parquet_table(path),
                 lambda: list(coyo.iter_parquet_batches(path, None, 8)), lambda: coyo.validate_shard_schema(path)):
        with pytest.raises(coyo.CoyoFileError) as err:
            call()
        assert str(err.value).startswith(str(path))


@FAST
@given(n=st.integers(0, 6), cut=st.integers(0, 5000), schema=st.sampled_from(["ok", "missing", "int", "extra"]))
def test_flan_hostile_parquet_parts_raise_errors_that_name_the_part(n, cut, schema):
    cols = {"inputs": pa.array([f"q{i}" for i in range(n)], pa.string()),
            "targets": pa.array([f"a{i}" for i in range(n)], pa.string()), "task": pa.array(["t"] * n)}
    if schema == "missing":
        del cols["targets"]
    elif schema == "int":
        cols["inputs"] = pa.array(list(range(n)), pa.int64())
    full = _parquet_bytes(pa.table(cols))
    payload = full if cut % 2 == 0 else full[: cut % len(full)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cot_fsopt_data" / "part-0.parquet"
        path.parent.mkdir()
        path.write_bytes(payload)
        part = flan.FlanPart("cot_fsopt_data/part-0.parquet", path)
        try:
            rows = flan._part_rows(part)
        except flan.FlanInputError as exc:
            assert str(exc).startswith("cot_fsopt_data/part-0.parquet: ")
            assert payload != full or schema in ("missing", "int")
        else:
            assert rows == n and schema in ("ok", "extra") and payload == full


# --- JSONL rows (M3IT) --------------------------------------------------------------------------------------

m3it_record = st.fixed_dictionaries({}, optional={
    "question": hostile_text | json_value, "answer": hostile_text | json_value,
    "image_str": st.sampled_from([__import__("base64").b64encode(JPEG).decode(), "not base64!", "", "aGVsbG8="])
    | st.lists(st.sampled_from(["aGVsbG8=", "@@"]), max_size=2) | json_value,
})
m3it_line = st.tuples(st.booleans(), st.sampled_from(["ok"] * 4 + ["truncated", "bad_utf8"]),
                      m3it_record | json_value).map(lambda t: _line(*t)) | st.binary(max_size=30)


@FAST
@given(lines=st.lists(m3it_line, max_size=8), policy=st.sampled_from(list(Policy)))
def test_m3it_hostile_lines_are_reported_with_file_and_line(lines, policy):
    t = m3it.task("docvqa")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        train = tmp / "train.jsonl"
        train.write_bytes(b"\n".join(lines) + b"\n")
        instructions = tmp / "instructions.json"
        instructions.write_text(json.dumps(["Answer: "]))
        layout = PerFileLayout(tmp / "pkl", tmp / "parquet")
        summary = m3it.convert_task(t, train, instructions, layout, policy=policy, display_name="docvqa/train.jsonl")
        n_lines = sum(1 for raw in (b"\n".join(lines) + b"\n").split(b"\n") if raw.strip())
        assert summary.lines <= n_lines
        for bad in summary.invalid:
            assert bad.file == "docvqa/train.jsonl" and 1 <= bad.line <= len(lines) * 2 + 1
        info = layout.read_info(t.stem)
        assert info.rows == summary.lines - summary.dropped


# --- LLaVA / ShareGPT4V conversations ---------------------------------------------------------------------

turn = st.fixed_dictionaries({}, optional={"from": st.sampled_from(["human", "gpt", "system", ""]) | json_value,
                                           "value": hostile_text | json_value})
conversation = st.fixed_dictionaries({}, optional={
    "id": hostile_text | json_value, "image": hostile_text | st.lists(hostile_text, max_size=3) | json_value,
    "conversations": st.lists(turn | json_value, max_size=4) | json_value}) | json_value


@FAST
@given(records=st.lists(conversation, max_size=8))
def test_llava_conversations_are_validated_with_their_index(records):
    path = Path("/data/llava_v1_5_mix665k.json")
    from vila_assets.core.llava_json import ValidationReport

    report = ValidationReport(path)
    kept = list(check_records(path, records, strict=False, report=report))
    assert report.records == len(records) and report.valid + report.invalid == len(records)
    assert len(kept) == report.valid
    for rec in kept:  # what passes is what the loader accepts
        assert validate_conversation_record(rec, where="x") == []
    for problem in report.problems:
        assert problem.startswith(f"{path} record #")
    bad = [i for i, r in enumerate(records) if validate_conversation_record(r, where="x")]
    if bad:
        with pytest.raises(RecordError, match=rf"^{path} record #{bad[0]}[ :]"):
            list(check_records(path, records, strict=True))


@FAST
@given(records=st.lists(conversation, max_size=8))
def test_sharegpt4v_filter_never_crashes_and_keeps_only_valid_records(records):
    path = "sharegpt4v_instruct_gpt4-vision_cap100k.json"
    kept_iter, report = filter_records(path, records, FilterRules(), strict=False)
    kept = list(kept_iter)
    assert report.records_in == len(records) and report.records_out == len(kept)
    for rec in kept:
        assert validate_conversation_record(rec, where="x") == []
    assert all(p.startswith(f"{path} record #") for p in report.problems)


@FAST
@given(records=st.lists(conversation, max_size=5), cut=st.integers(0, 400), junk=st.binary(max_size=6))
def test_llava_json_array_garbage_names_the_file(records, cut, junk):
    raw = json.dumps(records).encode("utf-8", "surrogatepass")
    payload = raw if cut % 4 == 0 else raw[: cut % (len(raw) + 1)] + junk
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chat.json"
        path.write_bytes(payload)
        try:
            out = list(iter_json_array(path))
        except JsonArrayError as exc:
            assert str(exc).startswith(str(path))
        else:
            assert len(out) <= max(len(records), 1) or payload != raw


# --- regressions found by the properties above -------------------------------------------------------------


@pytest.mark.parametrize("doc", [
    {"text_list": ["\ud800"], "image_info": [{"raw_url": "http://x/a.jpg", "matched_text_index": 0}],
     "similarity_matrix": [[0.1]]},
    {"text_list": ["a"], "image_info": [{"raw_url": "http://x/\udfff.jpg", "matched_text_index": 0}],
     "similarity_matrix": [[0.1]]},
    {"text_list": ["a"], "image_info": [{"raw_url": "http://x/a.jpg", "matched_text_index": 0}],
     "similarity_matrix": [[0.1]], "url": "http://page/\ud83d"},
])
def test_mmc4_doc_with_a_lone_surrogate_is_invalid_not_a_crash_of_the_shard(tmp_path, doc):
    shard = tmp_path / "docs_shard_1_v2.jsonl"
    shard.write_text(json.dumps(doc) + "\n" + DOC.decode() + "\n")  # json.dumps escapes: valid ASCII file
    parsed = mmc4.parse_shard(shard)
    assert [r["status"] for r in parsed.rows] == ["invalid", "valid"]
    assert "lone surrogate" in parsed.rows[0]["reason"] and parsed.rows[0]["where"] == "docs_shard_1_v2.jsonl:1"
    mmc4.write_annotations(parsed, tmp_path / "a.parquet")
    crawl = mmc4.crawl_rows(mmc4.read_annotations(tmp_path / "a.parquet"))
    mmc4.write_parquet(tmp_path / "crawl_input.parquet", crawl, mmc4.CRAWL_INPUT_SCHEMA)
    assert [r["line"] for r in crawl] == [2]


def test_conversation_with_a_lone_surrogate_is_an_invalid_record_not_a_crash():
    records = [{"id": "1", "conversations": [{"from": "human", "value": "hi \ud800"}, {"from": "gpt", "value": "x"}]},
               {"id": "2", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}]}]
    kept_iter, report = filter_records("cap.json", records, FilterRules(), strict=False)
    assert [r["id"] for r in kept_iter] == ["2"]
    assert report.problems and report.problems[0].startswith("cap.json record #0 (id '1'): text is not valid UTF-8")


@pytest.mark.parametrize("policy", list(Policy))
def test_m3it_line_with_a_lone_surrogate_is_reported_not_a_crash_of_the_task(tmp_path, policy):
    b64 = __import__("base64").b64encode(JPEG).decode()
    lines = [json.dumps({"question": "q\ud800", "answer": "a", "image_str": b64}),
             json.dumps({"question": "q", "answer": "a", "image_str": "\udc00"}),
             json.dumps({"question": "q", "answer": "a", "image_str": b64})]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "instructions.json").write_text('["Answer: "]')
    layout = PerFileLayout(tmp_path / "pkl", tmp_path / "parquet")
    summary = m3it.convert_task(m3it.task("docvqa"), tmp_path / "train.jsonl", tmp_path / "instructions.json",
                                layout, policy=policy, display_name="docvqa/train.jsonl")
    assert [(r.line, r.reason) for r in summary.invalid] == [(1, "bad_json"), (2, "bad_json")]
    assert layout.read_info(m3it.task("docvqa").stem).rows == 1
