import fsspec

from vila_assets.resources.storage import DataRoot


def test_layout_mirrors_vila_registry_paths(tmp_path):
    root = DataRoot(root=str(tmp_path))
    assert root.playground("mmc4-core", "pkl-core") == tmp_path / "playground/data/mmc4-core/pkl-core"
    assert root.manifests("coyo") == tmp_path / "manifests/coyo"
    assert not str(root.manifests("coyo")).startswith(str(root.playground()))


def test_fsspec_root_writes_atomically(tmp_path):
    root = DataRoot(root="memory://bucket/vila", local_cache=str(tmp_path))
    url = root.write_bytes("reports/x.txt", b"hello")
    assert url == "memory://bucket/vila/reports/x.txt"
    fs = fsspec.filesystem("memory")
    assert fs.cat("/bucket/vila/reports/x.txt") == b"hello"
    assert [p for p in fs.ls("/bucket/vila/reports") if ".tmp-" in p] == []
    local = root.path("manifests", "m.parquet")
    local.parent.mkdir(parents=True)
    local.write_bytes(b"pq")
    assert root.publish(local) == "memory://bucket/vila/manifests/m.parquet"
