"""COYO from any source (the hub, a directory a user already holds, an fsspec URL), with the same
selection from each and errors that name the file."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import dagster as dg
import fsspec
import pytest

from tests.dagster_runs import defs_for, failure_text, run
from vila_assets.assets.coyo.layout import CoyoLayout
from vila_assets.assets.coyo.sources import CoyoSource
from vila_assets.core import coyo
from vila_assets.profiles import data_root_at
from vila_assets.sample_world.world import SampleWorld

KEYS = ("00001", "00002")
STEPS = ["coyo_metadata_shard", "coyo_selection"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with SampleWorld(tmp_path_factory.mktemp("coyo-sources"), scale="test", clip=False, families=["coyo"]) as w:
        yield w


def _select(world, root: Path, source: CoyoSource | None = None) -> tuple[dg.ExecuteInProcessResult, CoyoLayout]:
    overrides = {"coyo_source": source} if source else {}
    with dg.instance_for_test() as instance:
        result = run(defs_for(world, root, **overrides), instance, STEPS, KEYS)
    return result, CoyoLayout(data_root_at(str(root)))


def _selections(layout: CoyoLayout) -> dict[str, bytes]:
    return {k: layout.selection(k).read_bytes() for k in KEYS}


@pytest.fixture(scope="module")
def from_hub(world, tmp_path_factory):
    result, layout = _select(world, tmp_path_factory.mktemp("hub") / "data")
    assert result.success, failure_text(result)
    return layout


def _repo(world) -> Path:
    return world.hub_root / "datasets" / coyo.REPO_ID


def test_a_local_directory_gives_the_hubs_selection(world, from_hub, tmp_path):
    local = tmp_path / "coyo-700m"
    shutil.copytree(_repo(world), local)
    result, layout = _select(world, tmp_path / "data", CoyoSource(location=str(local)))
    assert result.success, failure_text(result)
    assert _selections(layout) == _selections(from_hub)
    source = json.loads(layout.source("00001").read_text())
    assert source["location"] == str(local) and source["sha"] is None
    assert source["name"] == str(local / coyo.shard_filename("00001"))
    hub_source = json.loads(from_hub.source("00001").read_text())
    assert len(hub_source["sha"]) == 40 and hub_source["location"] == coyo.REPO_ID


def test_an_fsspec_url_gives_the_hubs_selection_in_either_published_layout(world, from_hub, tmp_path):
    fs = fsspec.filesystem("memory")
    release, converted = f"memory://coyo-{uuid.uuid4().hex}", f"memory://coyo-{uuid.uuid4().hex}"
    fs.pipe(f"{release}/data/_SUCCESS", b"")
    for key in ("00000", *KEYS):  # a partial copy: shards are found by the number in their name
        data = (_repo(world) / coyo.shard_filename(key)).read_bytes()
        fs.pipe(f"{release}/{coyo.shard_filename(key)}", data)
        fs.pipe(f"{converted}/kakaobrain--coyo-700m/train/{int(key):04d}.parquet", data)  # refs/convert/parquet
    for i, url in enumerate((release, converted)):
        result, layout = _select(world, tmp_path / f"data{i}", CoyoSource(location=url))
        assert result.success, failure_text(result)
        assert _selections(layout) == _selections(from_hub), url
        assert json.loads(layout.source("00002").read_text())["location"] == url


def test_a_truncated_shard_fails_naming_the_file(world, tmp_path):
    local = tmp_path / "coyo-700m"
    shutil.copytree(_repo(world), local)
    cut = local / coyo.shard_filename("00002")
    cut.write_bytes(cut.read_bytes()[:40])
    result, _ = _select(world, tmp_path / "data", CoyoSource(location=str(local)))
    assert not result.success
    text = failure_text(result)
    assert f"COYO shard 00002: {cut}: not a readable parquet file" in text


def test_a_missing_source_or_shard_is_named(world, tmp_path):
    result, _ = _select(world, tmp_path / "a", CoyoSource(location=str(tmp_path / "nowhere")))
    assert not result.success
    assert f"COYO source {tmp_path / 'nowhere'}: " in failure_text(result)
    assert "source directory does not exist" in failure_text(result)
    local = tmp_path / "partial"
    shutil.copytree(_repo(world), local)
    (local / coyo.shard_filename("00001")).unlink()
    result, _ = _select(world, tmp_path / "b", CoyoSource(location=str(local)))
    assert not result.success
    assert f"{local}: COYO shard 00001: no file '{coyo.shard_filename('00001')}'" in failure_text(result)
