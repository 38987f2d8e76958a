"""FLAN 1M sampler (core.flan): seeded, streaming, independent of file order and library versions."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vila_assets.core import flan
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


def _run(parts, n, seed, out: Path):
    layout = PerFileLayout(out / "pkl", out / "pq")
    summary = flan.sample_flan(parts, n, seed, layout)
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
