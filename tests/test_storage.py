"""The data root: VILA's layout, and the fsspec implementation publishing atomically (memory:// and a real
S3-compatible server on 127.0.0.1)."""

from __future__ import annotations

import fsspec
import pytest

from vila_assets.profiles import data_root_at
from vila_assets.resources.storage import REMOTE_TMP, FsspecDataRoot, LocalDataRoot


def test_layout_mirrors_vila_registry_paths(tmp_path):
    root = LocalDataRoot(root=str(tmp_path))
    assert root.playground("mmc4-core", "pkl-core") == tmp_path / "playground/data/mmc4-core/pkl-core"
    assert root.manifests("coyo") == tmp_path / "manifests/coyo"
    assert not str(root.manifests("coyo")).startswith(str(root.playground()))


def test_a_path_gives_a_local_root_and_a_url_an_fsspec_root(tmp_path):
    assert isinstance(data_root_at(str(tmp_path)), LocalDataRoot)
    assert isinstance(data_root_at(f"file://{tmp_path}"), LocalDataRoot)
    remote = data_root_at("s3://bucket/vila", local_cache=str(tmp_path))
    assert isinstance(remote, FsspecDataRoot) and not remote.is_local
    assert remote.path("x") == tmp_path.resolve() / "x"


def test_local_root_publish_and_fetch_are_the_files_themselves(tmp_path):
    root = LocalDataRoot(root=str(tmp_path))
    f = root.manifests("coyo", "a.parquet")
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    assert root.publish(f) == str(f)
    assert root.fetch(f) == f and root.url(f) == str(f)


def _memory_root(tmp_path, name):
    return FsspecDataRoot(url_root=f"memory://{name}/vila", local_cache=str(tmp_path / "work"))


def test_fsspec_root_writes_atomically(tmp_path):
    root = _memory_root(tmp_path, "atomic")
    url = root.write_bytes("reports/x.txt", b"hello")
    assert url == "memory://atomic/vila/reports/x.txt"
    fs = fsspec.filesystem("memory")
    assert fs.cat("/atomic/vila/reports/x.txt") == b"hello"
    assert fs.find(f"/atomic/vila/{REMOTE_TMP}") == []  # the temporary object was moved, not copied


def test_publish_dir_mirrors_a_shard_folder_and_removes_stale_files(tmp_path):
    root = _memory_root(tmp_path, "mirror")
    shards = root.playground("coyo-700m", "pkl02-split")
    shards.mkdir(parents=True)
    for stem in ("part-00000", "part-00001"):
        (shards / f"{stem}.pkl").write_bytes(b"p")
        (shards / f"{stem}.count").write_text("1")
    root.publish_dir(shards)
    for stale in shards.glob("part-00001.*"):
        stale.unlink()
    root.publish_dir(shards)
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find("/mirror/vila/playground/data/coyo-700m/pkl02-split"))
    assert names == ["part-00000.count", "part-00000.pkl"]


def test_fetch_brings_a_published_file_into_an_empty_working_copy(tmp_path):
    writer = FsspecDataRoot(url_root="memory://fetch/vila", local_cache=str(tmp_path / "a"))
    reader = FsspecDataRoot(url_root="memory://fetch/vila", local_cache=str(tmp_path / "b"))
    d = writer.manifests("vflan", "chunks")
    d.mkdir(parents=True)
    (d / "c0.parquet").write_bytes(b"0")
    (d / "c1.parquet").write_bytes(b"1")
    writer.publish_dir(d)
    local = reader.fetch(reader.manifests("vflan", "chunks", "c0.parquet"))
    assert local.read_bytes() == b"0" and local.parent.parent.parent.parent == tmp_path / "b"
    reader.fetch_dir(reader.manifests("vflan", "chunks"))
    assert (tmp_path / "b/manifests/vflan/chunks/c1.parquet").read_bytes() == b"1"
    assert not reader.fetch(reader.manifests("vflan", "missing.parquet")).exists()


def test_fsspec_root_against_a_real_s3_server(s3_server, tmp_path):
    root = FsspecDataRoot(url_root=f"s3://{s3_server.bucket}/unit", local_cache=str(tmp_path),
                          storage_options=s3_server.storage_options)
    f = root.playground("llava_v1_5_mix665k.json")
    f.parent.mkdir(parents=True)
    f.write_text("[]")
    assert root.publish(f) == f"s3://{s3_server.bucket}/unit/playground/data/llava_v1_5_mix665k.json"
    fs = s3_server.fs()
    assert fs.cat(f"{s3_server.bucket}/unit/playground/data/llava_v1_5_mix665k.json") == b"[]"
    assert not fs.exists(f"{s3_server.bucket}/unit/{REMOTE_TMP}") or fs.find(f"{s3_server.bucket}/unit/{REMOTE_TMP}") == []


@pytest.fixture
def s3_server(monkeypatch):
    from tests.s3_server import S3Server

    with S3Server(monkeypatch) as server:
        yield server


def test_publish_dir_keeps_the_remote_shard_folder_loadable_after_every_single_operation(tmp_path, monkeypatch):
    """A process killed between any two uploads or deletes leaves a folder VILA's loader reads: every
    remote ``.count`` has its ``.pkl`` beside it, holding as many records as it says."""
    import pickle

    root = _memory_root(tmp_path, "ordered")
    shards = root.playground("coyo-700m", "pkl02-split")
    remote_dir = "/ordered/vila/playground/data/coyo-700m/pkl02-split"
    fs = fsspec.filesystem("memory")
    states: list[dict[str, bytes]] = []

    def snapshot():
        states.append({p.rsplit("/", 1)[1]: fs.cat_file(p) for p in fs.find(remote_dir)} if fs.exists(remote_dir)
                      else {})

    put, rm = FsspecDataRoot._put, type(fs).rm_file
    monkeypatch.setattr(FsspecDataRoot, "_put", lambda self, *a: (put(self, *a), snapshot())[0])
    monkeypatch.setattr(type(fs), "rm_file", lambda self, *a, **k: (rm(self, *a, **k), snapshot())[0])

    def write(stem, n):
        (shards / f"{stem}.pkl").write_bytes(pickle.dumps(list(range(n))))
        (shards / f"{stem}.count").write_text(str(n))

    shards.mkdir(parents=True)
    for stem, n in (("part-00000", 3), ("part-00001", 2), ("part-00002", 4)):
        write(stem, n)
    root.publish_dir(shards)
    write("part-00000", 5)  # rewritten with another length
    for stale in shards.glob("part-00002.*"):  # no longer produced
        stale.unlink()
    root.publish_dir(shards)

    assert len(states) > 8
    for i, state in enumerate(states):
        for name, data in state.items():
            if name.endswith(".count"):
                pkl = state.get(name.removesuffix(".count") + ".pkl")
                assert pkl is not None and len(pickle.loads(pkl)) == int(data), (i, name, sorted(state))
    assert sorted(states[-1]) == ["part-00000.count", "part-00000.pkl", "part-00001.count", "part-00001.pkl"]
    assert states[-1]["part-00000.count"] == b"5"
