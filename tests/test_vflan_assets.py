"""The vflan assets on the sample world: FLAN + M3IT from the loopback hub, then 128 chunks read as VILA does."""

from __future__ import annotations

import pickle
import uuid
from types import SimpleNamespace

import dagster as dg
import fsspec
import pytest

from tests.dagster_runs import check_results, checks_passed, defs_for, failure_text, materializations, op_config, partition_metadata, run
from vila_assets.assets.vflan import CHUNK_KEYS
from vila_assets.assets.vflan.layout import VflanLayout
from vila_assets.assets.vflan.sources import FlanSource
from vila_assets.core import m3it as m3it_core
from vila_assets.core.vflan import FLAN_STEM, loader_turns
from vila_assets.definitions import build_definitions
from vila_assets.core.vila_format import decode_base64_image, iter_shard_records, loader_shards, registry_path, validate_shard_dir
from vila_assets.resources.storage import FsspecDataRoot, LocalDataRoot
from vila_assets.sample_world.sizes import flan_sample_size

pytestmark = pytest.mark.slow
SOURCES = ["flan_1m", "m3it_tasks"]


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
    assert md["m3it_tasks"]["invalid_records"] == 3  # the sample world's three broken M3IT lines


def test_one_ranged_run_writes_every_chunk_and_passes_every_check(built):
    assert built.chunks.success, failure_text(built.chunks)
    assert len(built.chunks.get_asset_materialization_events()) == 128  # one run, every chunk
    assert checks_passed(built.chunks) == {
        "vflan_chunks:record_schema": True, "vflan_chunks:counts": True,
        "vflan_chunks:duplicates": True, "vflan_chunks:loader_contract": True,
    }
    md = materializations(built.chunks)["vflan_chunks"]
    assert md["shards_in_run"] == 128 and md["total_planned"] == md["records_in_run"]


def test_chunks_read_like_vilas_loader(built):
    out = built.out
    assert out == built.root / "playground/data/vlm-flan-clean-text1m-nosqa-sharded"
    assert validate_shard_dir(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(f"part-{i:05d}.{e}" for i in range(128) for e in ("pkl", "count"))
    shards = loader_shards(out)
    assert max(s.count for s in shards) - min(s.count for s in shards) <= 1

    md = materializations(built.sources)
    flan_n, m3it_n = md["flan_1m"]["records"], md["m3it_tasks"]["records"]
    assert sum(s.count for s in shards) == flan_n + m3it_n

    # LazyVFlanDataset: .count = length; question/answer/image; FLAN text-only has image []
    flan_seen = dialog_seen = 0
    for _, rec in iter_shard_records(out):
        assert isinstance(rec["question"], str) and isinstance(rec["answer"], str) and isinstance(rec["image"], list)
        if rec["id"].startswith("text_flan_"):
            assert rec["image"] == []
            flan_seen += 1
        else:
            assert rec["image"] and decode_base64_image(rec["image"][0]).size[0] > 0
        if "Image Descriptions" in rec["question"]:
            turns = loader_turns(rec)
            assert len(turns) >= 2 and turns[-1][1] == rec["answer"]
            dialog_seen += 1
    assert flan_seen == flan_n and dialog_seen > 0


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
    assert reseeded != order and sorted(reseeded) == sorted(order)

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
        return build_definitions(sample_world.profile(FsspecDataRoot(url_root=url, local_cache=str(tmp_path / name))))

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

