"""VFLAN chunks (core.vflan): the curated seeded shuffle laid out for a world size, the vila plan
(split_vflan.py's shuffle and parts), and the loader's view of both."""

from __future__ import annotations

import hashlib
import pickle
import random

import pyarrow.parquet as pq
import pytest

from vila_assets.core import vflan
from vila_assets.core.train_layout import usable_records
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


def _build(tmp_path, layout, infos, seed=1, chunks=range(128), name="out", plan=None):
    plan = plan or vflan.make_shuffle_plan(infos, seed)
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


# --- curated: laid out for the training world size -------------------------------------------------------


def test_curated_layout_pads_so_every_record_is_usable_at_the_world_size(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 130, "vqa_gqa_train": 3})
    plan = vflan.make_shuffle_plan(infos, 1, world_size=4)
    assert (plan.total, plan.padded, plan.in_chunks, plan.dropped) == (133, 3, 136, 0)
    assert usable_records(plan.sizes, 4).usable == 136  # every slot read: nothing lost
    _, out = _build(tmp_path, layout, infos, plan=plan)
    records = [r for _, r in iter_shard_records(out)]
    ids = [r["id"] for r in records]
    assert len(ids) == 136 and len(set(ids)) == 133
    # the repeats are the first records of the shuffled sequence, at its end
    assert ids[-3:] == ids[:3]
    vflan.write_plan_index(plan, tmp_path / "plan.parquet")
    index = pq.read_table(tmp_path / "plan.parquet")
    assert index.column("padding").to_pylist().count(True) == 3 and index.num_rows == 136
    report = vflan.duplicate_report(tmp_path / "out-manifests", range(128))
    assert report.records == 133 and report.duplicate_records == 0  # padding is not a duplicate


def test_curated_layout_refuses_a_world_size_that_does_not_divide_the_chunks():
    infos = _infos({"text_flan_1m": 300})
    with pytest.raises(ValueError, match="do not split evenly over world size 96"):
        vflan.plan_for("curated", infos, 1, 96)


# --- vila: split_vflan.py ----------------------------------------------------------------------------------


def _infos(sizes: dict[str, int]) -> list[vflan.SourceInfo]:
    """Row counts alone: all a plan reads."""
    return [vflan.SourceInfo(stem, n, "sha") for stem, n in sizes.items()]


def _vila_split(stems_rows: dict[str, int], seed=1):
    """split_vflan.py over records named (stem, row): name-sorted files, random.seed + shuffle, parts."""
    everything = [(stem, i) for stem in sorted(stems_rows, key=lambda s: f"{s}.pkl") for i in range(stems_rows[stem])]
    random.seed(seed)
    random.shuffle(everything)
    per = len(everything) // 128
    parts, k = [], 0
    while len(everything) - k * per >= per:
        parts.append(everything[k * per:(k + 1) * per])
        k += 1
    return parts


@pytest.mark.parametrize("sizes", [{"text_flan_1m": 300, "vqa_gqa_train": 89},  # 389 -> 129 parts [reference]
                                   {"text_flan_1m": 17_000, "captioning_textcap_train": 11}])  # 128 parts
def test_vila_plan_is_split_vflans_shuffle_and_parts(sizes):
    infos = _infos(sizes)
    plan = vflan.make_vila_shuffle_plan(infos, 1)
    parts = _vila_split(sizes)
    assert plan.sizes == [len(p) for p in parts]
    n = sum(sizes.values())
    assert plan.dropped == n - sum(plan.sizes) == n % (n // 128)
    by_source = {s.stem: pos for s, pos in zip(plan.sources, plan.positions)}
    flat = [rec for part in parts for rec in part]
    assert [by_source[stem][row] for stem, row in flat] == list(range(len(flat)))


def test_vila_plan_parts_past_127_belong_to_the_last_partition(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 300, "vqa_gqa_train": 89})
    plan = vflan.make_vila_shuffle_plan(infos, 1)
    assert plan.n_chunks == 129 and plan.sizes == [3] * 129 and plan.dropped == 2
    assert vflan.chunks_for_partitions(plan, [0, 5]) == [0, 5]
    assert vflan.chunks_for_partitions(plan, [127]) == [127, 128]
    assert vflan.partition_of(128) == 127
    _, out = _build(tmp_path, layout, infos, chunks=vflan.chunks_for_partitions(plan, range(128)), plan=plan)
    assert validate_shard_dir(out) == []
    assert [s.count for s in loader_shards(out)] == [3] * 129
    records = [r for _, r in iter_shard_records(out)]
    assert len(records) == 387 and len({r["id"] for r in records}) == 387
    # a later plan with fewer parts: the old tail is stale
    smaller = vflan.make_vila_shuffle_plan(infos[:1], 1)
    assert smaller.n_chunks == 150 and vflan.stale_chunk_files(out, smaller) == []
    assert [p.name for p in vflan.stale_chunk_files(out, vflan.make_shuffle_plan(infos, 1))] == [
        "part-00128.count", "part-00128.pkl"]


def test_vila_plan_refuses_fewer_than_128_records_instead_of_looping():
    infos = _infos({"text_flan_1m": 100})
    with pytest.raises(ValueError, match="100 records: VILA's split_vflan.py cuts .* never finishes"):
        vflan.make_vila_shuffle_plan(infos, 1)


def test_vila_plan_orders_sources_by_pickle_file_name():
    # "a-b.pkl" sorts before "a.pkl" ('-' < '.'), though the stem "a" sorts before "a-b"
    infos = _infos({"a": 100, "a-b": 100})
    plan = vflan.make_vila_shuffle_plan(infos, 1)
    assert [s.stem for s in plan.sources] == ["a-b", "a"]


def test_a_damaged_per_file_copy_is_named(tmp_path):
    layout, infos = _sources(tmp_path, {"text_flan_1m": 200, "vqa_gqa_train": 10})
    plan = vflan.make_shuffle_plan(infos, 1)
    copy = layout.parquet("vqa_gqa_train")
    copy.write_bytes(copy.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"vqa_gqa_train\.parquet: unreadable Parquet copy"):
        vflan.build_chunks(plan, layout, [0], tmp_path / "o", tmp_path / "m", tmp_path / "w")
    with pytest.raises(ValueError, match=r"vqa_gqa_train\.json / .*vqa_gqa_train\.parquet: unreadable"):
        layout.read_info("vqa_gqa_train")
