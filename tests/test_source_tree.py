"""Any source, anywhere: hub repo, local directory and fsspec URL give the same listing and bytes."""

from __future__ import annotations

import fsspec
import pytest

from vila_assets.core.hub import HubLocation
from vila_assets.core.source_tree import FsspecTree, HubTree, LocalTree, SourceError, open_source
from vila_assets.sample_world.hub_server import FakeHub

FILES = {"README.md": b"# r\n", "data/part-0.parquet": b"PAR1...", "data/_SUCCESS": b""}


def _write_dir(root):
    for rel, data in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / ".cache").mkdir()
    (root / ".cache" / "x.lock").write_bytes(b"")  # a hub download cache beside the data is not data


def test_location_forms(tmp_path):
    assert isinstance(open_source(str(tmp_path)), LocalTree)
    assert isinstance(open_source("file://" + str(tmp_path)), LocalTree)
    assert isinstance(open_source("memory://bucket/x", cache_dir=tmp_path), FsspecTree)
    assert isinstance(open_source("owner/name"), HubTree)
    assert isinstance(open_source("hf:owner/name"), HubTree)
    with pytest.raises(SourceError, match="not a hub repo id"):
        open_source("just-a-name")
    with pytest.raises(SourceError, match="empty"):
        open_source(" ")


def test_local_memory_and_hub_agree(tmp_path):
    local = tmp_path / "local"
    _write_dir(local)
    fs = fsspec.filesystem("memory")
    for rel, data in FILES.items():
        fs.pipe(f"/srcs/agree/{rel}", data)
    hub_root = tmp_path / "hub"
    _write_dir(hub_root / "datasets" / "owner" / "name")
    (hub_root / "datasets" / "owner" / "name" / ".cache" / "x.lock").unlink()
    (hub_root / "datasets" / "owner" / "name" / ".cache").rmdir()
    with FakeHub(hub_root) as endpoint:
        trees = [open_source(str(local)), open_source("memory://srcs/agree", cache_dir=tmp_path / "c"),
                 open_source("owner/name", hub=HubLocation(endpoint=endpoint, cache_dir=str(tmp_path / "hf")))]
        for tree in trees:
            assert tree.list_files() == sorted(FILES), tree.location
            assert tree.list_files("data/*.parquet") == ["data/part-0.parquet"]
            for rel, data in FILES.items():
                assert tree.fetch(rel).read_bytes() == data
        assert trees[2].revision and len(trees[2].revision) == 40
        assert trees[0].revision is None and trees[1].revision is None


def test_errors_name_location_and_file(tmp_path):
    local = tmp_path / "local"
    _write_dir(local)
    with pytest.raises(SourceError, match="local/missing.json: no such file"):
        open_source(str(local)).fetch("missing.json")
    with pytest.raises(SourceError, match="refusing"):
        open_source(str(local)).fetch("../escape")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nope")).list_files()
    with pytest.raises(SourceError, match="memory://srcs/none/a.json: no such file"):
        open_source("memory://srcs/none", cache_dir=tmp_path).fetch("a.json")
