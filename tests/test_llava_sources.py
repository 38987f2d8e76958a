"""LLaVA sources anywhere: the three repos read from a local directory or an fsspec URL (memory://) give the
same published files as the hub, and a missing file fails naming it."""

import json
import shutil

import dagster as dg
import fsspec
import pytest

from tests.dagster_runs import defs_for, failure_text, materializations, partition_metadata, run
from vila_assets.assets.llava.sources import LlavaSource
from vila_assets.core.vila_format import registry_path
from vila_assets.sample_world.sources import llava as llava_world

ASSETS = ("llava_cc3m_595k", "llava_mix665k")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip_cache):
    from vila_assets.sample_world.world import SampleWorld

    with SampleWorld(tmp_path_factory.mktemp("llava-sources"), scale="test", clip=False, families=["llava"],
                     model_cache=tiny_clip_cache) as world:
        yield world


@pytest.fixture(scope="module")
def from_hub(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-root")
    with dg.instance_for_test() as instance:
        assert run(defs_for(world, root), instance, ASSETS).success
    return root


def _repo(world, repo_id):
    return world.hub_root / "datasets" / repo_id


def _same_outputs(a, b):
    for name in ("llava_1_5_align", "llava_1_5_sft"):
        assert registry_path(name, a).read_bytes() == registry_path(name, b).read_bytes(), name


def test_sources_read_from_a_local_directory(world, from_hub, tmp_path):
    held = tmp_path / "held"
    for repo in (llava_world.CC3M_REPO, llava_world.INSTRUCT_REPO):
        shutil.copytree(_repo(world, repo), held / repo.split("/")[1])
    source = LlavaSource(cc3m_location=str(held / "LLaVA-CC3M-Pretrain-595K"),
                         instruct_location=f"file://{held / 'LLaVA-Instruct-150K'}")
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, tmp_path / "root", llava_source=source), instance, ASSETS)
    assert res.success, failure_text(res)
    md = materializations(res)
    assert md["llava_cc3m_595k"]["source"] == str(held / "LLaVA-CC3M-Pretrain-595K")
    assert "revision_sha" not in md["llava_mix665k"]  # a directory has no revision
    _same_outputs(tmp_path / "root", from_hub)


def test_sources_read_from_an_fsspec_url(world, from_hub, tmp_path):
    fs = fsspec.filesystem("memory")
    for repo, prefix in ((llava_world.CC3M_REPO, "memory://llava-test/cc3m"),
                         (llava_world.INSTRUCT_REPO, "memory://llava-test/instruct")):
        for f in _repo(world, repo).iterdir():
            fs.pipe(f"{prefix}/{f.name}", f.read_bytes())
    source = LlavaSource(cc3m_location="memory://llava-test/cc3m", instruct_location="memory://llava-test/instruct")
    try:
        with dg.instance_for_test() as instance:
            res = run(defs_for(world, tmp_path / "root", llava_source=source), instance, ASSETS)
    finally:
        fs.rm("/llava-test", recursive=True)
    assert res.success, failure_text(res)
    assert materializations(res)["llava_mix665k"]["source"] == "memory://llava-test/instruct"
    _same_outputs(tmp_path / "root", from_hub)


def test_a_missing_source_file_fails_naming_it(world, tmp_path):
    held = tmp_path / "held"
    shutil.copytree(_repo(world, llava_world.CC3M_REPO), held)
    (held / "chat.json").unlink()
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, tmp_path / "root", llava_source=LlavaSource(cc3m_location=str(held))), instance,
                  ("llava_cc3m_595k",))
    assert not res.success
    assert f"{held / 'chat.json'}: no such file in source directory {held}" in failure_text(res)


def test_llava_pretrain_images_from_a_local_directory(world, tmp_path):
    held = tmp_path / "LLaVA-Pretrain"
    shutil.copytree(_repo(world, llava_world.PRETRAIN_REPO), held)
    key = "llava/llava_pretrain/images"
    with dg.instance_for_test() as instance:
        res = run(defs_for(world, tmp_path / "root", llava_source=LlavaSource(pretrain_location=str(held))),
                  instance, ("sft_image_roots",), keys=[key])
        assert res.success, failure_text(res)
        md = partition_metadata(instance, "sft_image_roots", key)
    records = json.loads((held / "blip_laion_cc_sbu_558k.json").read_text())
    images = tmp_path / "root/playground/data" / key
    assert md["images"] == len(records) and all((images / r["image"]).is_file() for r in records)
    assert str(held / "images.zip") in md["sources"]
