import pickle

import pytest

from vila_assets.core import vila_format as vf


def test_write_pickle_shard_pairs_pkl_and_count(tmp_path):
    vf.write_pickle_shard(tmp_path, "part-00000", [{"a": 1}, {"a": 2}])
    vf.write_pickle_shard(tmp_path, "part-00001", [{"a": 3}])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-00000.count", "part-00000.pkl", "part-00001.count", "part-00001.pkl",
    ]
    shards = vf.loader_shards(tmp_path)
    assert [(s.stem, s.count) for s in shards] == [("part-00000", 2), ("part-00001", 1)]
    assert [r["a"] for _, r in vf.iter_shard_records(tmp_path)] == [1, 2, 3]
    assert vf.validate_shard_dir(tmp_path) == []


def test_rerun_writes_identical_bytes(tmp_path):
    recs = [{"text": "x", "image": "abc", "n": i} for i in range(5)]
    vf.write_pickle_shard(tmp_path / "a", "s", recs)
    vf.write_pickle_shard(tmp_path / "b", "s", recs)
    assert (tmp_path / "a" / "s.pkl").read_bytes() == (tmp_path / "b" / "s.pkl").read_bytes()


def test_validate_flags_extra_files_and_miscounts(tmp_path):
    vf.write_pickle_shard(tmp_path, "s0", [{}, {}])
    (tmp_path / "manifest.parquet").write_bytes(b"x")
    (tmp_path / "s0.count").write_text("3")
    (tmp_path / "s1.pkl").write_bytes(pickle.dumps([]))
    problems = "\n".join(vf.validate_shard_dir(tmp_path))
    assert "manifest.parquet" in problems
    assert "says 3 but the pickle holds 2" in problems
    assert "not paired" in problems


def test_split_sizes_distributes_the_remainder():
    assert vf.split_sizes(10, 3) == [4, 3, 3]
    assert sum(vf.split_sizes(1_000_003, 128)) == 1_000_003
    assert vf.split_sizes(5, 8) == [1, 1, 1, 1, 1, 0, 0, 0]
    assert vf.fixed_size_parts(25, 10) == [10, 10, 5]
    assert vf.fixed_size_parts(20, 10) == [10, 10]


def test_registry_paths_match_vila_defaults(tmp_path):
    assert vf.registry_path("mmc4core", tmp_path) == tmp_path / "playground/data/mmc4-core/pkl-core"
    assert vf.registry_path("coyo", tmp_path) == tmp_path / "playground/data/coyo-700m/pkl02-split"
    assert vf.registry_path("vflan", tmp_path) == tmp_path / "playground/data/vlm-flan-clean-text1m-nosqa-sharded"


@pytest.mark.parametrize(
    "rec,needle",
    [
        ({"id": "1", "conversations": []}, "non-empty list"),
        ({"id": "1", "conversations": [{"from": "gpt", "value": "x"}]}, "expected 'human'"),
        ({"id": "1", "conversations": [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "x"}]}, "no 'image'"),
        ({"conversations": [{"from": "human", "value": "hi"}]}, "missing 'id'"),
    ],
)
def test_conversation_validation_names_the_record(rec, needle):
    problems = vf.validate_conversation_record(rec, where="f.json[3]")
    assert problems and needle in "\n".join(problems)
    assert all(p.startswith("f.json[3]") for p in problems)


def test_valid_conversation_has_no_problems():
    rec = {"id": "9", "image": "coco/train2017/1.jpg",
           "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A bus."}]}
    assert vf.validate_conversation_record(rec, where="x") == []


def test_shard_write_never_leaves_anything_in_the_listed_folder(tmp_path):
    """Temp files grow outside the folder VILA counts; a writer that dies mid-stream leaves it untouched."""
    import os

    from vila_assets.core.vila_format import shard_tmp_dir, validate_shard_dir, write_pickle_shard

    out = tmp_path / "pkl"
    write_pickle_shard(out, "part-00000", [{"a": 1}])
    seen_during = []

    def records():
        yield {"a": 2}
        seen_during.append(sorted(os.listdir(out)))
        seen_during.append(sorted(os.listdir(shard_tmp_dir(out))))
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_pickle_shard(out, "part-00001", records())
    assert seen_during[0] == ["part-00000.count", "part-00000.pkl"]  # mid-write: nothing new inside
    assert len(seen_during[1]) == 1 and seen_during[1][0].startswith(".part-00001.pkl.tmp-")
    assert sorted(os.listdir(out)) == ["part-00000.count", "part-00000.pkl"]
    assert validate_shard_dir(out) == []


def test_rewriting_a_shard_never_leaves_a_count_that_lies_about_its_pickle(tmp_path, monkeypatch):
    """A shard rewritten with another length, killed between the .pkl rename and the .count write: the
    shard is uncounted (the loader skips it), never counted with the old length."""
    import pickle

    from vila_assets.core import vila_format as vf

    out = tmp_path / "pkl"
    vf.write_pickle_shard(out, "part-00000", [{"a": 1}, {"a": 2}, {"a": 3}])

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("killed before the .count")

    monkeypatch.setattr(vf, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        vf.write_pickle_shard(out, "part-00000", [{"a": 1}])
    assert not (out / "part-00000.count").exists()
    assert len(pickle.loads((out / "part-00000.pkl").read_bytes())) == 1
    monkeypatch.undo()
    vf.write_pickle_shard(out, "part-00000", [{"a": 1}])  # the rerun completes the pair
    assert vf.read_count(out / "part-00000.count") == 1 and vf.validate_shard_dir(out) == []
    # the same length again, killed before the .count: the old .count is still right, so it stays
    monkeypatch.setattr(vf, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        vf.write_pickle_shard(out, "part-00000", [{"a": 9}])
    assert vf.read_count(out / "part-00000.count") == 1 and vf.validate_shard_dir(out) == []
