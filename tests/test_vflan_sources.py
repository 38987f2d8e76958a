"""FLAN and M3IT from anywhere: the same files as a local directory and behind an fsspec URL give the same
outputs, and a file missing from the source is named with its location."""

from __future__ import annotations

import shutil
import uuid

import dagster as dg
import fsspec
import pytest

from tests.dagster_runs import failure_text, materializations, run
from vila_assets.assets import vflan as vflan_assets
from vila_assets.assets.vflan.layout import VflanLayout
from vila_assets.assets.vflan.sources import FlanSource, M3itSource
from vila_assets.core import m3it as m3it_core
from vila_assets.core.vflan import FLAN_STEM
from vila_assets.profiles import production
from vila_assets.resources.storage import LocalDataRoot
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import flan as flan_world
from vila_assets.sample_world.sources import m3it as m3it_world

pytestmark = pytest.mark.slow
SOURCES = ["flan_1m", "m3it_tasks"]


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """The sample world's two repos as local directories, and a copy of each behind a memory:// URL."""
    ctx = SourceContext(tmp_path_factory.mktemp("hub"), "http://127.0.0.1:9", seed=0, scale="test")
    flan_world.build(ctx)
    m3it_world.build(ctx)
    fs = fsspec.filesystem("memory")
    urls = {}
    for repo in (flan_world.REPO, m3it_world.REPO):
        local = ctx.repo_dir(repo)
        base = f"/vflan-{uuid.uuid4().hex}/{repo}"
        for path in local.rglob("*"):
            if path.is_file():
                fs.pipe(f"{base}/{path.relative_to(local).as_posix()}", path.read_bytes())
        urls[repo] = f"memory://{base}"
    return {"local": {r: str(ctx.repo_dir(r)) for r in urls}, "memory": urls}


def _materialize(root, flan_location: str, m3it_location: str):
    resources = {**production(LocalDataRoot(root=str(root))).resources,
                 "flan_source": FlanSource(location=flan_location, sample_size=150),
                 "m3it_source": M3itSource(location=m3it_location)}
    defs = dg.Definitions.merge(vflan_assets.defs, dg.Definitions(resources=resources))
    with dg.DagsterInstance.ephemeral() as instance:
        return run(defs, instance, SOURCES)


def _outputs(root) -> dict[str, bytes]:
    layout = VflanLayout(LocalDataRoot(root=str(root)))
    return {stem: layout.per_file.pickle(stem).read_bytes() for stem in (FLAN_STEM, *m3it_core.TASK_STEMS)}


def test_a_local_directory_and_an_fsspec_url_give_the_same_outputs(repos, tmp_path):
    results = {}
    for kind in ("local", "memory"):
        where = repos[kind]
        res = _materialize(tmp_path / kind, where[flan_world.REPO], where[m3it_world.REPO])
        assert res.success, failure_text(res)
        md = materializations(res)
        assert md["flan_1m"]["location"] == where[flan_world.REPO] and md["flan_1m"]["revision_sha"] is None
        assert md["m3it_tasks"]["location"] == where[m3it_world.REPO] and md["m3it_tasks"]["records"] > 0
        results[kind] = _outputs(tmp_path / kind)
    assert results["local"] == results["memory"]
    # the URL's files were copied into the data root's cache before they were read
    assert any((tmp_path / "memory" / "cache" / "sources").rglob("train_v2.jsonl"))


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_missing_task_file_is_named_with_its_location(repos, tmp_path, kind):
    where = dict(repos[kind])
    if kind == "local":  # a copy without viquae's v2 train file
        copy = tmp_path / "m3it"
        shutil.copytree(where[m3it_world.REPO], copy)
        (copy / "data/vqa/viquae/train_v2.jsonl").unlink()
        where[m3it_world.REPO] = str(copy)
    else:
        fs, base = fsspec.core.url_to_fs(where[m3it_world.REPO])
        bare = f"/vflan-{uuid.uuid4().hex}"
        fs.copy(base, bare, recursive=True)
        fs.rm(f"{bare}/data/vqa/viquae/train_v2.jsonl")
        where[m3it_world.REPO] = f"memory://{bare}"
    res = _materialize(tmp_path / "data", where[flan_world.REPO], where[m3it_world.REPO])
    assert not res.success
    text = failure_text(res)
    assert "data/vqa/viquae/train_v2.jsonl" in text and "(viquae)" in text
    assert where[m3it_world.REPO].removeprefix("memory://").rstrip("/") in text


def test_a_malformed_location_fails_with_its_name(repos, tmp_path):
    res = _materialize(tmp_path / "data", "just-a-name", repos["local"][m3it_world.REPO])
    assert not res.success
    assert "'just-a-name': not a hub repo id" in failure_text(res)
