"""The vflan assets on the sample world's FLAN and M3IT (the real repos' layout, served by the loopback hub),
then the chunks read as VILA does, under both data policies.

The world holds only these two families and the code location only the vflan assets, so these tests
depend on nothing else."""

from __future__ import annotations

import pickle
import uuid
from types import SimpleNamespace

import dagster as dg
import fsspec
import pytest

from tests.dagster_runs import check_results, checks_passed, failure_text, materializations, op_config, partition_metadata, profile_for, run
from vila_assets.assets import vflan as vflan_assets
from vila_assets.assets.vflan import CHUNK_KEYS
from vila_assets.assets.vflan.layout import VflanLayout
from vila_assets.assets.vflan.sources import FlanSource
from vila_assets.core import m3it as m3it_core
from vila_assets.core.sft_mixture import _shard_component
from vila_assets.core.train_layout import usable_records
from vila_assets.core.vflan import FLAN_STEM, loader_turns
from vila_assets.core.vila_format import decode_base64_image, iter_shard_records, loader_shards, registry_path, validate_shard_dir
from vila_assets.resources.policy import DataPolicy
from vila_assets.resources.storage import FsspecDataRoot, LocalDataRoot
from vila_assets.sample_world.sizes import TRAIN_WORLD_SIZE, flan_sample_size
from vila_assets.sample_world.world import SampleWorld

pytestmark = pytest.mark.slow
SOURCES = ["flan_1m", "m3it_tasks"]


def defs_for(world, root, **resources) -> dg.Definitions:
    """The vflan assets with the sample-world profile's resources (``resources`` replaced)."""
    return dg.Definitions.merge(vflan_assets.defs, dg.Definitions(resources=profile_for(world, root, **resources).resources))


@pytest.fixture(scope="module")
def sample_world(tmp_path_factory):
    with SampleWorld(tmp_path_factory.mktemp("world"), scale="test", clip=False, families=["flan", "m3it"]) as world:
        yield world


@pytest.fixture
def instance():
    # In-memory event log: a ranged run over 128 partitions writes ~400 events, ~0.1 s each in SQLite here.
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="module")
def built(sample_world, tmp_path_factory):
    """FLAN + M3IT, then all 128 chunks in one ranged run (what a single_run backfill does)."""
    root = tmp_path_factory.mktemp("vflan") / "data"
    defs = defs_for(sample_world, root)
    with dg.DagsterInstance.ephemeral() as inst:
        sources = run(defs, inst, SOURCES)
        chunks = run(defs, inst, ["vflan_chunks"], keys=CHUNK_KEYS)
        yield SimpleNamespace(root=root, instance=inst, sources=sources, chunks=chunks,
                              layout=VflanLayout(LocalDataRoot(root=str(root))), out=registry_path("vflan", root))


def _flan_records(layout: VflanLayout) -> list[dict]:
    with open(layout.per_file_outputs(FLAN_STEM)[0], "rb") as fh:
        return pickle.load(fh)


def test_sources_materialize_and_pass_their_checks(built, sample_world):
    assert built.sources.success, failure_text(built.sources)
    assert checks_passed(built.sources) == {
        "flan_1m:sample_size": True, "flan_1m:folders_present": True,
        "m3it_tasks:tasks_present": True, "m3it_tasks:invalid_records": True,
    }
    md = materializations(built.sources)
    assert md["flan_1m"]["records"] == flan_sample_size(sample_world.scale) == 150  # the flan_source resource
    assert md["m3it_tasks"]["invalid_records"] == md["m3it_tasks"]["dropped_records"] == 3  # the broken lines
    assert md["flan_1m"]["policy"] == md["m3it_tasks"]["policy"] == "curated"  # the default policy
    assert md["flan_1m"]["location"] == "hf:Open-Orca/FLAN" and len(md["flan_1m"]["revision_sha"]) == 40


def test_one_ranged_run_writes_every_chunk_and_passes_every_check(built):
    assert built.chunks.success, failure_text(built.chunks)
    assert len(built.chunks.get_asset_materialization_events()) == 128  # one run, every chunk
    assert checks_passed(built.chunks) == {
        "vflan_chunks:record_schema": True, "vflan_chunks:counts": True,
        "vflan_chunks:duplicates": True, "vflan_chunks:loader_contract": True,
        "vflan_chunks:train_world_size": True,
    }
    md = materializations(built.chunks)["vflan_chunks"]
    assert md["shards_in_run"] == 128 and md["total_planned"] == md["records_in_run"]
    # curated: laid out for the profile's world size, nothing dropped, the shortfall padded
    assert (md["policy"], md["train_world_size"], md["dropped_by_split"]) == ("curated", TRAIN_WORLD_SIZE, 0)
    assert md["total_planned"] == md["total_records"] + md["padded"] and md["padded"] < TRAIN_WORLD_SIZE
    world = check_results(built.chunks)["vflan_chunks:train_world_size"]
    assert world.metadata["lost"].value == 0 and world.metadata["usable_records"].value == md["total_records"]


def test_chunks_read_like_vilas_loader(built):
    out = built.out
    assert out == built.root / "playground/data/vlm-flan-clean-text1m-nosqa-sharded"
    assert validate_shard_dir(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(f"part-{i:05d}.{e}" for i in range(128) for e in ("pkl", "count"))
    shards = loader_shards(out)
    assert max(s.count for s in shards) - min(s.count for s in shards) <= 1

    md = materializations(built.sources)
    flan_n, m3it_n = md["flan_1m"]["records"], md["m3it_tasks"]["records"]
    padded = materializations(built.chunks)["vflan_chunks"]["padded"]
    assert sum(s.count for s in shards) == flan_n + m3it_n + padded
    assert usable_records([s.count for s in shards], TRAIN_WORLD_SIZE).usable == flan_n + m3it_n + padded

    # LazyVFlanDataset: .count = length; question/answer/image; FLAN text-only has image []
    flan_seen, dialog_seen = set(), 0
    for _, rec in iter_shard_records(out):
        assert isinstance(rec["question"], str) and isinstance(rec["answer"], str) and isinstance(rec["image"], list)
        if rec["id"].startswith("text_flan_"):
            assert rec["image"] == []
            flan_seen.add(rec["id"])
        else:
            assert rec["image"] and decode_base64_image(rec["image"][0]).size[0] > 0
        if "Image Descriptions" in rec["question"]:
            turns = loader_turns(rec)
            assert len(turns) >= 2 and turns[-1][1] == rec["answer"]
            dialog_seen += 1
    assert len(flan_seen) == flan_n and dialog_seen > 0
    assert _shard_component("vflan", built.root).samples == flan_n + m3it_n + padded  # what the SFT mixture reads


def test_per_file_pickles_stay_in_staging(built):
    layout = built.layout
    pickle_dir = layout.per_file.pickle_dir
    assert pickle_dir.is_relative_to(built.root / "staging")
    assert sorted(p.stem for p in pickle_dir.glob("*.pkl")) == sorted([FLAN_STEM, *m3it_core.TASK_STEMS])
    assert len(_flan_records(layout)) == materializations(built.sources)["flan_1m"]["records"]
    assert layout.m3it_invalid.is_file() and layout.shuffle_plan.is_file()
    assert sorted(p.name for p in layout.chunk_manifests.iterdir()) == [f"part-{k}.parquet" for k in CHUNK_KEYS]
    assert not layout.spill("any").parent.exists() or not any(layout.spill("any").parent.iterdir())  # scratch removed


def test_each_chunk_partition_carries_its_own_counts(built):
    for key in ("00000", "00127"):
        md = partition_metadata(built.instance, "vflan_chunks", key)
        assert md["records"] == int((built.out / f"part-{key}.count").read_text())
        assert sum(md["by_source"].values()) == md["records"]


def test_rerun_is_byte_identical_and_another_seed_differs(sample_world, tmp_path, instance):
    root = tmp_path / "data"
    out, layout = registry_path("vflan", root), VflanLayout(LocalDataRoot(root=str(root)))
    defs = defs_for(sample_world, root)

    def materialize_all() -> None:
        assert run(defs, instance, SOURCES).success
        assert run(defs, instance, ["vflan_chunks"], keys=CHUNK_KEYS).success

    materialize_all()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    flan_first = layout.per_file_outputs(FLAN_STEM)[0].read_bytes()
    invalid_first = layout.m3it_invalid.read_bytes()
    order = [r["id"] for _, r in iter_shard_records(out)]

    materialize_all()  # a rerun rewrites every file with the same bytes
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert layout.per_file_outputs(FLAN_STEM)[0].read_bytes() == flan_first
    assert layout.m3it_invalid.read_bytes() == invalid_first

    assert run(defs, instance, ["vflan_chunks"], keys=CHUNK_KEYS, run_config=op_config("vflan_chunks", seed=7)).success
    reseeded = [r["id"] for _, r in iter_shard_records(out)]
    assert reseeded != order and set(reseeded) == set(order)  # the padding repeats differ with the order

    other_sample = defs_for(sample_world, root, flan_source=FlanSource(sample_size=flan_sample_size(sample_world.scale), seed=3))
    assert run(other_sample, instance, ["flan_1m"]).success
    assert {r["question"] for r in _flan_records(layout)} != {r["question"] for r in pickle.loads(flan_first)}


def test_a_single_chunk_run_warns_that_the_rest_is_missing_and_errs_when_one_is_stale(sample_world, tmp_path, instance):
    root = tmp_path / "data"
    defs = defs_for(sample_world, root)
    assert run(defs, instance, SOURCES).success
    res = run(defs, instance, ["vflan_chunks"], keys=["00042"])
    assert res.success
    checks = check_results(res)
    counts = checks["vflan_chunks:counts"]
    assert (counts.passed, counts.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert counts.metadata["chunks_missing"].value == 127
    assert checks["vflan_chunks:loader_contract"].passed and checks["vflan_chunks:record_schema"].passed
    out = registry_path("vflan", root)
    assert sorted(p.name for p in out.iterdir()) == ["part-00042.count", "part-00042.pkl"]

    # FLAN resampled: chunk 42 was built from the old plan, so it is stale, which is an error
    assert run(defs_for(sample_world, root, flan_source=FlanSource(sample_size=120)), instance, ["flan_1m"]).success
    res = run(defs, instance, ["vflan_chunks"], keys=["00043"])
    counts = check_results(res)["vflan_chunks:counts"]
    assert (counts.passed, counts.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert counts.metadata["chunks_stale"].value == 1 and "part-00042: built with plan" in counts.description


def test_check_thresholds_come_from_run_config(sample_world, tmp_path, instance):
    defs = defs_for(sample_world, tmp_path / "data")
    res = run(defs, instance, ["m3it_tasks"], run_config=op_config("m3it_tasks", checks={"max_invalid_fraction": 0.0}))
    assert res.success  # a warning does not fail the run
    invalid = check_results(res)["m3it_tasks:invalid_records"]
    assert (invalid.passed, invalid.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert invalid.metadata["bound"].value == 0.0 and invalid.metadata["invalid"].value == 3


def test_every_output_is_published_and_another_machine_builds_from_what_was_published(sample_world, tmp_path, instance):
    url = f"memory://vflan-{uuid.uuid4().hex}/vila"

    def machine(name: str) -> dg.Definitions:
        # the profile over a remote root whose working copy is this machine's own directory
        return defs_for(sample_world, tmp_path / name,
                        data_root=FsspecDataRoot(url_root=url, local_cache=str(tmp_path / name)))

    assert run(machine("a"), instance, SOURCES).success
    res = run(machine("b"), instance, ["vflan_chunks"], keys=CHUNK_KEYS)  # b fetches what a published
    assert res.success, failure_text(res)
    fs, base = fsspec.core.url_to_fs(url)
    remote = {p.removeprefix(base.rstrip("/") + "/") for p in fs.find(base)}
    layout = VflanLayout(LocalDataRoot(root="/"))
    rel = lambda p: p.relative_to("/").as_posix()  # noqa: E731
    expected = {rel(layout.shuffle_plan), rel(layout.m3it_invalid)}
    expected |= {rel(p) for stem in (FLAN_STEM, *m3it_core.TASK_STEMS) for p in layout.per_file_outputs(stem)}
    expected |= {rel(layout.chunk_manifest(c)) for c in range(128)}
    expected |= {f"{rel(layout.chunks_dir)}/part-{k}.{e}" for k in CHUNK_KEYS for e in ("pkl", "count")}
    assert expected <= remote
    assert not any("spill" in p for p in remote)  # scratch is never published

    # a third machine rebuilds one chunk: the rest of the directory is fetched, not deleted remotely
    res = run(machine("c"), instance, ["vflan_chunks"], keys=["00005"])
    assert checks_passed(res)["vflan_chunks:counts"]
    assert sum(p.endswith(".count") for p in fs.find(f"{base}/{rel(layout.chunks_dir)}")) == 128



def test_vila_policy_keeps_vilas_parts_and_reports_the_loss(sample_world, tmp_path, instance):
    root = tmp_path / "data"
    defs = defs_for(sample_world, root, data_policy=DataPolicy(policy="vila", train_world_size=TRAIN_WORLD_SIZE))
    sources = run(defs, instance, SOURCES)
    assert sources.success, failure_text(sources)
    md = materializations(sources)
    assert md["flan_1m"]["policy"] == "vila" and md["flan_1m"]["records"] == 150 and md["flan_1m"]["seed"] is None
    # vila keeps the two records whose images do not decode; only the line that is not JSON is dropped
    assert (md["m3it_tasks"]["invalid_records"], md["m3it_tasks"]["dropped_records"], md["m3it_tasks"]["kept_with_problems"]) == (3, 1, 2)
    chunks = run(defs, instance, ["vflan_chunks"], keys=CHUNK_KEYS)
    assert chunks.success, failure_text(chunks)
    n = md["flan_1m"]["records"] + md["m3it_tasks"]["records"]
    out = registry_path("vflan", root)
    shards = loader_shards(out)
    per = n // 128  # fewer than 16,384 records: VILA writes n // per parts, more than 128
    assert [s.count for s in shards] == [per] * (n // per) and len(shards) > 128
    assert validate_shard_dir(out) == []
    passed = checks_passed(chunks)
    assert all(passed[f"vflan_chunks:{c}"] for c in ("record_schema", "counts", "loader_contract")), check_results(chunks)
    world = check_results(chunks)["vflan_chunks:train_world_size"]
    usable = usable_records([s.count for s in shards], TRAIN_WORLD_SIZE)
    assert (world.passed, world.severity) == (usable.lost == 0, dg.AssetCheckSeverity.WARN)
    assert world.metadata["lost"].value == n - usable.usable == n % per + usable.lost
    if usable.lost:  # the parts do not split evenly over the ranks
        assert "records unusable" in world.description
    assert partition_metadata(instance, "vflan_chunks", "00127")["parts"] == len(shards) - 127  # owns the tail
    assert all("id" not in rec for _, rec in iter_shard_records(out) if rec["image"])  # VILA's M3IT keys

    # back to curated: the run owning the last partition removes the vila tail
    res = run(defs_for(sample_world, root), instance, ["vflan_chunks"], keys=CHUNK_KEYS)
    assert res.success and len(loader_shards(out)) == 128 and validate_shard_dir(out) == []
