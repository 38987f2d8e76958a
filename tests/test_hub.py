"""The real huggingface_hub client against the sample world's loopback hub."""

import pytest

from vila_assets.core.hub import HubError, HubLocation
from vila_assets.sample_world.hub_server import FakeHub


@pytest.fixture
def hub(tmp_path):
    repo = tmp_path / "hub" / "datasets" / "org" / "ds"
    (repo / "data").mkdir(parents=True)
    (repo / "chat.json").write_text('[{"id": "1"}]')
    (repo / "data" / "part.0.parquet").write_bytes(b"\x00" * 3000)
    fake = FakeHub(tmp_path / "hub")
    endpoint = fake.start()
    yield fake, HubLocation(endpoint=endpoint, cache_dir=str(tmp_path / "cache"))
    fake.stop()


def test_download_is_revision_pinned_and_cached(hub, tmp_path):
    fake, loc = hub
    sha = loc.resolve_revision("org/ds")
    assert len(sha) == 40
    assert loc.list_files("org/ds", sha) == ["chat.json", "data/part.0.parquet"]
    assert loc.list_files("org/ds", sha, pattern="data/*.parquet") == ["data/part.0.parquet"]
    path = loc.download("org/ds", "chat.json", sha)
    assert path.read_text() == '[{"id": "1"}]'
    assert sha in str(path)


def test_changed_data_gets_a_new_commit_and_old_pin_fails(hub, tmp_path):
    fake, loc = hub
    old = loc.resolve_revision("org/ds")
    (tmp_path / "hub" / "datasets" / "org" / "ds" / "chat.json").write_text("[]")
    fake.invalidate()
    new = loc.resolve_revision("org/ds")
    assert new != old
    with pytest.raises(HubError, match=old):
        loc.download("org/ds", "data/part.0.parquet", old)


def test_missing_file_and_repo_errors_name_them(hub):
    _, loc = hub
    sha = loc.resolve_revision("org/ds")
    with pytest.raises(HubError, match="no file 'nope.json'"):
        loc.download("org/ds", "nope.json", sha)
    with pytest.raises(HubError, match="org/missing"):
        loc.resolve_revision("org/missing")
