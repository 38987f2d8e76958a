"""VFLAN chunks (core.vflan): seeded shuffle, remainder spread over 128 chunks, the loader's view."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from vila_assets.core import vflan
from vila_assets.core.vila_format import iter_shard_records, loader_shards, validate_shard_dir


def _sources(tmp_path, sizes: dict[str, int], dup_every: int = 0) -> tuple[vflan.PerFileLayout, list[vflan.SourceInfo]]:
    layout = vflan.PerFileLayout(tmp_path / "pkl", tmp_path / "pq")
    infos = []
    for stem, n in sizes.items():
        with vflan.SourceFileWriter(layout, stem, row_group_size=16, batch_rows=10) as w:
            for i in range(n):
                q = "same question" if dup_every and i % dup_every == 0 else f"{stem} q{i}"
                w.write(vflan.make_record(q, "same answer" if dup_every and i % dup_every == 0 else f"a{i}", f"{stem}_{i:08d}", []))
        infos.append(w.info)
    return layout, infos


def _build(tmp_path, layout, infos, seed=1, chunks=range(128), name="out"):
    plan = vflan.make_shuffle_plan(infos, seed)
    out = tmp_path / name
    vflan.build_chunks(plan, layout, chunks, out, tmp_path / f"{name}-manifests", tmp_path / f"{name}-work")
    return plan, out


def test_remainder_is_spread_not_dropped(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 700, "vqa_gqa_train": 300})
    plan, out = _build(tmp_path, layout, infos)
    assert validate_shard_dir(out) == []
    shards = loader_shards(out)  # exactly how VILA's sharded loader lists the directory
    assert [s.stem for s in shards] == [f"part-{i:05d}" for i in range(128)]
    assert [s.count for s in shards] == [8] * 104 + [7] * 24  # 1000 = 128 * 7 + 104
    ids = [r["id"] for _, r in iter_shard_records(out)]
    assert len(ids) == len(set(ids)) == 1000  # every record exactly once
    assert sorted(ids) == sorted([f"text_flan_1m_{i:08d}" for i in range(700)] + [f"vqa_gqa_train_{i:08d}" for i in range(300)])


def test_fewer_records_than_chunks_still_finishes_with_empty_chunks(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 50})
    plan, out = _build(tmp_path, layout, infos)
    assert plan.sizes == [1] * 50 + [0] * 78
    assert validate_shard_dir(out) == []
    assert sum(s.count for s in loader_shards(out)) == 50
    assert pickle.loads((out / "part-00127.pkl").read_bytes()) == []


def test_shuffle_is_seeded_and_byte_identical(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 300, "vqa_gqa_train": 100})
    _, a = _build(tmp_path, layout, infos, seed=1, name="a")
    _, b = _build(tmp_path, layout, list(reversed(infos)), seed=1, name="b")  # source order does not matter
    _, c = _build(tmp_path, layout, infos, seed=2, name="c")
    for i in range(128):
        assert (a / f"part-{i:05d}.pkl").read_bytes() == (b / f"part-{i:05d}.pkl").read_bytes()
    order_a = [r["id"] for _, r in iter_shard_records(a)]
    order_c = [r["id"] for _, r in iter_shard_records(c)]
    assert sorted(order_a) == sorted(order_c) and order_a != order_c
    # mixed, not concatenated: the first chunk holds both sources
    first = pickle.loads((a / "part-00000.pkl").read_bytes()) + pickle.loads((a / "part-00001.pkl").read_bytes())
    assert {r["id"].split("_train")[0][:4] for r in first} == {"text", "vqa_"}


def test_a_single_chunk_run_writes_the_same_bytes_as_the_full_run(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 400})
    _, full = _build(tmp_path, layout, infos, name="full")
    _, part = _build(tmp_path, layout, infos, chunks=[5, 77], name="part")
    assert sorted(p.name for p in part.iterdir()) == ["part-00005.count", "part-00005.pkl", "part-00077.count", "part-00077.pkl"]
    for stem in ("part-00005", "part-00077"):
        assert (part / f"{stem}.pkl").read_bytes() == (full / f"{stem}.pkl").read_bytes()
    assert not any((tmp_path / "part-work").iterdir())  # spill files cleaned up


def test_duplicate_pairs_are_reported(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 200}, dup_every=10)  # 20 identical pairs
    plan, _ = _build(tmp_path, layout, infos)
    report = vflan.duplicate_report(tmp_path / "out-manifests", range(128))
    assert (report.records, report.duplicate_pairs, report.duplicate_records) == (200, 19, 19)
    assert vflan.chunk_fingerprints(tmp_path / "out-manifests", [0, 1]) == {0: plan.fingerprint, 1: plan.fingerprint}


def test_stale_source_is_detected(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 200})
    plan = vflan.make_shuffle_plan(infos, 1)
    _sources(tmp_path, {"text_flan_1m": 150})  # upstream rewritten after the plan
    with pytest.raises(ValueError, match="150 rows but the plan expects 200"):
        vflan.build_chunks(plan, layout, [0], tmp_path / "o", tmp_path / "m", tmp_path / "w")


def test_per_file_pickle_loads_as_a_plain_list_across_batches(tmp_path):
    # Written by the one VILA pickle writer (vila_format.PickleListWriter), 1000 records per batch.
    shared = "the same str object twice"
    records = [vflan.make_record(shared, shared, str(i), ["x" * 70_000] * (i % 3)) for i in range(2500)]
    layout = vflan.PerFileLayout(tmp_path / "pkl", tmp_path / "pq")
    with vflan.SourceFileWriter(layout, "text_flan_1m", batch_rows=100) as w:
        for r in records:
            w.write(r)
    data = layout.pickle("text_flan_1m").read_bytes()
    assert pickle.loads(data) == records
    assert data[:2] == b"\x80\x03"  # protocol 3, vila_format.PICKLE_PROTOCOL
    assert w.info == vflan.SourceInfo("text_flan_1m", 2500, hashlib.sha256(data).hexdigest())
    assert layout.read_info("text_flan_1m") == w.info


def test_loader_turns_matches_vilas_parsing():
    plain = {"question": "Describe.<image> ", "answer": "A cat.", "image": ["b64", "b64"]}
    assert vflan.loader_turns(plain) == [("<image>\n<image>\nDescribe.", "A cat.")]
    dialog = {
        "question": "Answer.\nImage Descriptions: a dog\nQuestion: what?\nAnswer: a dog\nQuestion: color?\n",
        "answer": "brown",
        "image": ["b64"],
    }
    assert vflan.loader_turns(dialog) == [("<image>\nwhat?", "a dog"), ("color?", "brown")]
    broken = {**dialog, "question": dialog["question"] + "Answer: brown"}
    assert vflan.record_problems(broken, where="x")  # VILA would assert here
    assert vflan.record_problems({"question": 1, "answer": "a", "image": "s"}, where="rec 3") == [
        "rec 3: 'question' is int, not str",
        "rec 3: 'image' must be a list of base64 strings",
    ]
