"""ShareGPT4V from any source: the same repos as local directories or behind an fsspec URL give the same
published bytes as the hub, under both policies; an unreadable input fails naming the file (and record)."""

import json
import shutil

import dagster as dg
import fsspec
import pytest

from tests.dagster_runs import defs_for, failure_text, materializations, run
from vila_assets.assets.sharegpt4v.sources import ShareGPT4VSource
from vila_assets.resources.policy import DataPolicy
from vila_assets.sample_world.sources import sharegpt4v as s4_world
from vila_assets.sample_world.world import SampleWorld

OUTPUTS = ("playground/data/sharegpt4v/sharegpt4v_mix738k_remove_sa.json",
           "playground/data/ShareGPT4V/jason-filter-share-captioner_coco_lcs_sam_1246k_1107.json")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with SampleWorld(tmp_path_factory.mktemp("s4-src-world"), scale="test", clip=False,
                     families=["llava", "sharegpt4v"]) as w:
        yield w


def publish(world, root, policy: str, **source):
    """One run of ``sharegpt4v_filtered`` (with mix665k first under curated) reading ``source``."""
    resources = {"data_policy": DataPolicy(policy=policy, train_world_size=4)}
    if source:
        resources["sharegpt4v_source"] = ShareGPT4VSource(**source)
    assets = ("sharegpt4v_filtered",) if policy == "vila" else ("llava_mix665k", "sharegpt4v_filtered")
    with dg.instance_for_test() as instance:
        return run(defs_for(world, root, **resources), instance, assets)


@pytest.fixture(scope="module")
def from_hub(world, tmp_path_factory):
    """The published bytes per policy, read from the (fake) hub."""
    out = {}
    for policy in ("vila", "curated"):
        root = tmp_path_factory.mktemp(f"s4-hub-{policy}") / "root"
        result = publish(world, root, policy)
        assert result.success, failure_text(result)
        out[policy] = {rel: (root / rel).read_bytes() for rel in OUTPUTS}
    return out


def local_copies(world, tmp_path) -> dict[str, str]:
    """Both repos as directories a user already holds."""
    dirs = {}
    for key, repo in (("captions_location", s4_world.CAPTIONS_REPO), ("mit_location", s4_world.MIT_REPO)):
        dirs[key] = str(shutil.copytree(world.hub_root / "datasets" / repo, tmp_path.resolve() / repo.replace("/", "__")))
    return dirs


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["vila", "curated"])
def test_local_directories_give_the_hubs_bytes(world, from_hub, tmp_path, policy):
    dirs = local_copies(world, tmp_path)
    result = publish(world, tmp_path / "root", policy, **dirs)
    assert result.success, failure_text(result)
    for rel in OUTPUTS:
        assert (tmp_path / "root" / rel).read_bytes() == from_hub[policy][rel], rel
    md = materializations(result)["sharegpt4v_filtered"]
    assert md["mit_source"] == dirs["mit_location"] and "mit_revision_sha" not in md  # a directory has no sha


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["vila", "curated"])
def test_fsspec_urls_give_the_hubs_bytes(world, from_hub, tmp_path, policy):
    fs = fsspec.filesystem("memory")
    urls = {}
    for key, repo in (("captions_location", s4_world.CAPTIONS_REPO), ("mit_location", s4_world.MIT_REPO)):
        base = f"/s4-{policy}/{repo.replace('/', '__')}"
        src = world.hub_root / "datasets" / repo
        for path in src.rglob("*"):
            if path.is_file():
                fs.pipe(f"{base}/{path.relative_to(src).as_posix()}", path.read_bytes())
        urls[key] = f"memory://{base}"
    try:
        result = publish(world, tmp_path / "root", policy, **urls)
    finally:
        fs.rm(f"/s4-{policy}", recursive=True)
    assert result.success, failure_text(result)
    for rel in OUTPUTS:
        assert (tmp_path / "root" / rel).read_bytes() == from_hub[policy][rel], rel
    assert materializations(result)["sharegpt4v_filtered"]["mit_source"] == urls["mit_location"]


@pytest.mark.slow
def test_missing_published_file_fails_naming_it(world, tmp_path):
    dirs = local_copies(world, tmp_path)
    missing = f"{dirs['mit_location']}/{s4_world.MIX738K}"
    (tmp_path / s4_world.MIT_REPO.replace("/", "__") / s4_world.MIX738K).unlink()
    result = publish(world, tmp_path / "root", "vila", **dirs)
    assert not result.success and f"cannot read {missing}" in failure_text(result)


@pytest.mark.slow
def test_malformed_published_record_fails_naming_file_and_record(world, tmp_path):
    dirs = local_copies(world, tmp_path)
    path = tmp_path.resolve() / s4_world.MIT_REPO.replace("/", "__") / s4_world.MIX738K
    records = json.loads(path.read_text())
    records[3]["conversations"][1]["from"] = "human"
    path.write_text(json.dumps(records))
    result = publish(world, tmp_path / "root", "vila", **dirs)
    text = failure_text(result)
    assert not result.success and f"cannot read {path}" in text
    assert f"{s4_world.MIX738K} record #3 (id {records[3]['id']!r}): turn 1 is from 'human'" in text
    assert not (tmp_path / "root" / OUTPUTS[0]).exists()  # nothing half-published


@pytest.mark.slow
def test_truncated_input_fails_naming_the_file(world, tmp_path):
    dirs = local_copies(world, tmp_path)
    path = tmp_path.resolve() / s4_world.CAPTIONS_REPO.replace("/", "__") / s4_world.PT1246K
    path.write_bytes(path.read_bytes()[:-40])
    result = publish(world, tmp_path / "root", "curated", **dirs)
    text = failure_text(result)
    assert not result.success and f"cannot read {path}" in text and "is not valid JSON" in text
