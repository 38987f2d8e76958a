"""FLAN 1M sampler (core.flan): curated (seeded, independent of file order and library versions) and vila
(VILA's linspace rows over VILA's file order), both streaming; errors name the file."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vila_assets.core import flan
from vila_assets.core.policy import Policy
from vila_assets.core.vflan import FLAN_STEM, PerFileLayout, row_hashes


def _write_part(root: Path, rel: str, rows: list[tuple[str | None, str | None]]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "inputs": pa.array([r[0] for r in rows], pa.string()),
            "targets": pa.array([r[1] for r in rows], pa.string()),
            "_template_idx": pa.array(range(len(rows)), pa.int64()),
            "_task_source": pa.array(["Flan2021"] * len(rows)),
            "_task_name": pa.array(["t"] * len(rows)),
            "_template_type": pa.array(["zs_opt"] * len(rows)),
        }
    )
    pq.write_table(table, path, row_group_size=7)


@pytest.fixture
def repo(tmp_path) -> Path:
    """Two folders; one with 12 parts so part.10 sorts before part.2 lexicographically."""
    root = tmp_path / "FLAN"
    for p in range(12):
        _write_part(root, f"flan_zsopt_data/part.{p}.parquet", [(f"f{p}-q{i}", f"f{p}-a{i}") for i in range(20)])
    for p in range(2):
        _write_part(root, f"t0_zsopt_data/part.{p}.parquet", [(f"t{p}-q{i}", f"t{p}-a{i}") for i in range(30)])
    _write_part(root, "other/part.0.parquet", [("never", "read")])  # not a *_data folder
    return root


def _run(parts, n, seed, out: Path, policy=Policy.curated):
    layout = PerFileLayout(out / "pkl", out / "pq")
    summary = flan.sample_flan(parts, n, seed, layout, policy=policy)
    return summary, layout.pickle(FLAN_STEM)


def test_sample_has_vila_record_format_and_size(repo, tmp_path):
    parts = flan.local_parts(repo)
    assert [p.relpath.split("/")[0] for p in parts].count("other") == 0
    summary, pkl = _run(parts, 100, 0, tmp_path / "a")
    records = pickle.load(open(pkl, "rb"))
    assert summary.total_rows == 12 * 20 + 2 * 30
    assert len(records) == summary.info.rows == 100
    assert all(list(r) == ["question", "answer", "id", "image"] for r in records)
    assert all(r["image"] == [] and isinstance(r["question"], str) for r in records)
    assert [r["id"] for r in records] == [f"text_flan_{i:08d}" for i in range(100)]
    # each selected row keeps its own inputs/targets pairing
    assert all(r["question"].replace("-q", "-a") == r["answer"] for r in records)
    # the Parquet copy holds the same records
    copy = pq.read_table(tmp_path / "a" / "pq" / f"{FLAN_STEM}.parquet").to_pylist()
    assert copy == records


def test_output_follows_numeric_part_order_not_lexicographic(repo, tmp_path):
    _, pkl = _run(flan.local_parts(repo), 200, 3, tmp_path / "a")
    records = pickle.load(open(pkl, "rb"))
    flan_parts = [int(r["question"].split("-")[0][1:]) for r in records if r["question"].startswith("f")]
    assert flan_parts == sorted(flan_parts)  # part.2 before part.10
    assert 10 in flan_parts and 2 in flan_parts


def test_same_seed_is_byte_identical_and_independent_of_listing_order(repo, tmp_path):
    parts = flan.local_parts(repo)
    _, a = _run(parts, 90, 7, tmp_path / "a")
    shuffled = parts[:]
    random.Random(5).shuffle(shuffled)
    _, b = _run(shuffled, 90, 7, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()


def test_different_seed_gives_a_different_sample(repo, tmp_path):
    parts = flan.local_parts(repo)
    _, a = _run(parts, 90, 1, tmp_path / "a")
    _, b = _run(parts, 90, 2, tmp_path / "b")
    qa = {r["question"] for r in pickle.load(open(a, "rb"))}
    qb = {r["question"] for r in pickle.load(open(b, "rb"))}
    assert qa != qb and len(qa) == len(qb) == 90


def test_selection_is_exactly_the_smallest_seeded_hashes(repo):
    parts = flan.local_parts(repo)
    sel = flan.select_rows(parts, 50, 11, hash_block=8)  # tiny blocks: exercises the bounded buffer
    every = [
        (int(h), p.relpath, r)
        for p in sorted(parts, key=lambda p: p.relpath)
        for r, h in enumerate(row_hashes(11, p.relpath, 0, pq.ParquetFile(p.path).metadata.num_rows))
    ]
    expected = {(rel, r) for _, rel, r in sorted(every)[:50]}
    got = {(sel.parts[int(i)].relpath, int(r)) for i, r in zip(sel.part_idx, sel.row_idx)}
    assert got == expected
    assert sel.max_candidates <= 2 * 50 + 8  # never more than 2n candidates plus one block


def test_sample_larger_than_flan_takes_every_row(repo, tmp_path):
    summary, pkl = _run(flan.local_parts(repo), 10_000, 0, tmp_path / "a")
    assert summary.info.rows == summary.total_rows == len(pickle.load(open(pkl, "rb")))


def test_row_hashes_are_pinned_values():
    # Integer arithmetic only: these values must never change with numpy/polars/Python upgrades.
    h = row_hashes(0, "flan_zsopt_data/part.0.parquet", 0, 3)
    assert h.dtype == np.uint64
    assert row_hashes(0, "flan_zsopt_data/part.0.parquet", 1, 2).tolist() == h[1:].tolist()
    assert len(set(h.tolist())) == 3
    assert h.tolist() == [474080596421313924, 7257926447875721169, 9300837695742795472]


def test_null_inputs_name_the_file_and_row(tmp_path):
    root = tmp_path / "FLAN"
    _write_part(root, "cot_zsopt_data/part.0.parquet", [("q0", "a0"), (None, "a1"), ("q2", "a2")])
    with pytest.raises(flan.FlanInputError, match=r"cot_zsopt_data/part\.0\.parquet row 1: 'inputs' is null"):
        _run(flan.local_parts(root), 3, 0, tmp_path / "o")


def test_missing_column_names_the_file(tmp_path):
    root = tmp_path / "FLAN"
    (root / "cot_zsopt_data").mkdir(parents=True)
    pq.write_table(pa.table({"inputs": ["q"]}), root / "cot_zsopt_data" / "part.0.parquet")
    with pytest.raises(flan.FlanInputError, match=r"cot_zsopt_data/part\.0\.parquet: missing column\(s\) \['targets'\]"):
        flan.select_rows(flan.local_parts(root), 1, 0)


# --- vila: torch.linspace over VILA's file order ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(n_rows=st.one_of(st.integers(1, 5000), st.integers(1, 2**31 - 65)), size=st.integers(0, 20_000))
def test_linspace_emulation_matches_torch_bit_for_bit(n_rows, size):
    expected = torch.linspace(0, n_rows - 1, size).int().numpy().astype(np.int64)
    assert flan.vila_linspace_indices(n_rows, size).tolist() == expected.tolist()


def test_linspace_emulation_stops_where_torchs_int32_wraps():
    assert flan.vila_linspace_indices(2**31 - 64, 3)[-1] == 2**31 - 128  # the largest end below 2**31
    assert torch.linspace(0, 2**31 - 65, 2).int()[-1] == 2**31 - 128
    with pytest.raises(ValueError, match="int32"):
        flan.vila_linspace_indices(2**31 - 63, 3)  # fl32(2**31 - 64) == 2**31: torch gives -2**31


def test_linspace_rounds_past_the_end_above_2_to_the_24():
    # float32 holds 19,999,999 as 20,000,000: VILA's script would index past its list here
    assert flan.vila_linspace_indices(20_000_000, 1000)[-1] == 20_000_000


def test_vila_takes_linspace_rows_in_vilas_string_order(repo, tmp_path):
    parts = flan.local_parts(repo, Policy.vila)
    assert [p.relpath for p in parts][:4] == [f"flan_zsopt_data/part.{i}.parquet" for i in (0, 1, 10, 11)]
    summary, pkl = _run(parts, 50, 999, tmp_path / "a", Policy.vila)
    rows = [(f"f{p}-q{i}", f"f{p}-a{i}") for p in (0, 1, 10, 11, *range(2, 10)) for i in range(20)]
    rows += [(f"t{p}-q{i}", f"t{p}-a{i}") for p in range(2) for i in range(30)]
    idx = torch.linspace(0, len(rows) - 1, 50).int().tolist()
    records = pickle.load(open(pkl, "rb"))
    assert [(r["question"], r["answer"]) for r in records] == [rows[i] for i in idx]
    assert [r["id"] for r in records] == [f"text_flan_{k:08d}" for k in range(50)]
    assert summary.past_end == 0 and summary.info.rows == 50


def test_vila_ignores_the_seed_and_repeats_rows_when_the_sample_exceeds_flan(repo, tmp_path):
    parts = flan.local_parts(repo, Policy.vila)
    _, a = _run(parts, 1000, 1, tmp_path / "a", Policy.vila)
    _, b = _run(parts, 1000, 2, tmp_path / "b", Policy.vila)
    assert a.read_bytes() == b.read_bytes()
    records = pickle.load(open(a, "rb"))
    assert len(records) == 1000 and len({r["question"] for r in records}) == 12 * 20 + 2 * 30


def test_vila_clamps_an_index_past_the_end_and_counts_it(repo, monkeypatch, tmp_path):
    parts = flan.local_parts(repo, Policy.vila)
    total = 12 * 20 + 2 * 30
    monkeypatch.setattr(flan, "vila_linspace_indices", lambda n, size: np.array([0, n - 1, n], dtype=np.int64))
    summary, pkl = _run(parts, 3, 0, tmp_path / "a", Policy.vila)
    records = pickle.load(open(pkl, "rb"))
    assert summary.past_end == 1 and summary.total_rows == total
    assert records[1]["question"] == records[2]["question"] == "t1-q29"


def test_vila_reads_every_entry_of_a_data_folder_and_names_the_one_that_is_not_parquet(repo, tmp_path):
    (repo / "t0_zsopt_data" / "notes.txt").write_text("not parquet")
    with pytest.raises(flan.FlanInputError, match=r"t0_zsopt_data/notes\.txt: not a readable Parquet file"):
        _run(flan.local_parts(repo, Policy.vila), 10, 0, tmp_path / "a", Policy.vila)
    rels, skipped = flan.part_paths([p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()])
    assert skipped == ["t0_zsopt_data/notes.txt"] and "t0_zsopt_data/notes.txt" not in rels  # curated skips it


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_an_unreadable_part_names_the_file(repo, tmp_path, policy, damage):
    part = repo / "flan_zsopt_data" / "part.3.parquet"
    data = part.read_bytes()
    part.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(flan.FlanInputError, match=r"flan_zsopt_data/part\.3\.parquet: not a readable Parquet file"):
        _run(flan.local_parts(repo, policy), 10, 0, tmp_path / "a", policy)


def test_a_damaged_data_page_names_the_file(repo, tmp_path):
    part = repo / "t0_zsopt_data" / "part.0.parquet"
    table = pq.read_table(part)
    pq.write_table(table, part, compression="NONE", row_group_size=30)
    data = bytearray(part.read_bytes())
    start = data.find(b"t0-q0")
    data[start : start + 200] = b"\xff" * 200  # the footer still parses; the page does not
    part.write_bytes(bytes(data))
    with pytest.raises(flan.FlanInputError, match=r"t0_zsopt_data/part\.0\.parquet: unreadable near row"):
        _run(flan.local_parts(repo, Policy.vila), 400, 0, tmp_path / "a", Policy.vila)
