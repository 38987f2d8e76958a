"""The vflan assets on the sample world: FLAN + M3IT from the loopback hub, then 128 chunks read as VILA does."""

from __future__ import annotations

import pickle
from pathlib import Path

import dagster as dg
import pytest

from vila_assets.sample_world.world import world_env
from vila_assets.assets import vflan as vflan_assets
from vila_assets.core import m3it as m3it_core
from vila_assets.core.vflan import loader_turns
from vila_assets.core.vila_format import decode_base64_image, iter_shard_records, loader_shards, registry_path, validate_shard_dir
from vila_assets.demo import run_steps
from vila_assets.resources.hub import HubClient
from vila_assets.resources.storage import DataRoot
from vila_assets.sample_world.world import SampleWorld

FAMILIES = ["flan", "m3it"]


def _defs(env: dict[str, str]) -> dg.Definitions:
    # Only the resources these assets use, read from the same environment default_resources() reads.
    return dg.Definitions.merge(
        vflan_assets.defs,
        dg.Definitions(
            resources={
                "data_root": DataRoot(root=env["VILA_DATA_ROOT"]),
                "hub": HubClient(endpoint=env["VILA_HF_ENDPOINT"], cache_dir=env["VILA_HF_CACHE"]),
            }
        ),
    )


def _checks(result) -> dict[str, tuple[bool, str]]:
    out = {}
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            d = ev.event_specific_data
            out[d.check_name] = (d.passed, d.severity.value)
    return out


@pytest.fixture
def instance():
    # In-memory event log: a ranged run over 128 partitions writes ~280 events, ~0.1 s each in SQLite here.
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with SampleWorld(tmp_path_factory.mktemp("world"), scale="test", families=FAMILIES, clip=False) as w:
        yield w


def _materialize_all(world, data_root: Path, instance):
    """The family's demo steps: FLAN + M3IT, then all 128 chunks in one ranged run."""
    with world_env(world, data_root) as env:
        return run_steps(_defs(env), vflan_assets.demo_steps({}, "test"), instance)


def test_vflan_end_to_end_reads_like_vilas_loader(world, tmp_path, instance):
    results = _materialize_all(world, tmp_path / "data", instance)
    assert [r.success for r in results] == [True, True]
    assert results[1].checks_failed == [] and results[0].checks_failed == []
    assert results[1].materializations == 128  # one ranged run, every chunk

    out = registry_path("vflan", tmp_path / "data")
    assert out == tmp_path / "data/playground/data/vlm-flan-clean-text1m-nosqa-sharded"
    assert validate_shard_dir(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(f"part-{i:05d}.{e}" for i in range(128) for e in ("pkl", "count"))
    shards = loader_shards(out)
    assert max(s.count for s in shards) - min(s.count for s in shards) <= 1

    flan_n = instance.get_latest_materialization_event(dg.AssetKey("flan_1m")).asset_materialization.metadata["records"].value
    m3it_n = instance.get_latest_materialization_event(dg.AssetKey("m3it_tasks")).asset_materialization.metadata["records"].value
    assert flan_n == 150  # VILA_FLAN_SAMPLE_SIZE of the test world
    assert sum(s.count for s in shards) == flan_n + m3it_n

    # LazyVFlanDataset: .count = length; question/answer/image; FLAN text-only has image []
    flan_seen = dialog_seen = 0
    for stem, rec in iter_shard_records(out):
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

    per_file = tmp_path / "data/staging/vflan/new-vflan"
    assert sorted(p.stem for p in per_file.glob("*.pkl")) == sorted(["text_flan_1m", *m3it_core.TASK_STEMS])
    with open(per_file / "text_flan_1m.pkl", "rb") as fh:
        assert len(pickle.load(fh)) == flan_n


def test_rerun_is_byte_identical_and_another_seed_differs(world, tmp_path, instance):
    out = registry_path("vflan", tmp_path / "data")
    _materialize_all(world, tmp_path / "data", instance)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    flan_pkl = tmp_path / "data/staging/vflan/new-vflan/text_flan_1m.pkl"
    flan_first = flan_pkl.read_bytes()
    order = [r["id"] for _, r in iter_shard_records(out)]

    _materialize_all(world, tmp_path / "data", instance)  # a rerun rewrites every file with the same bytes
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert flan_pkl.read_bytes() == flan_first

    with world_env(world, tmp_path / "data") as env:
        job = _defs(env).resolve_implicit_global_asset_job_def()
        res = job.execute_in_process(
            asset_selection=[dg.AssetKey("vflan_chunks")],
            tags={"dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00127"},
            run_config={"ops": {"vflan_chunks": {"config": {"seed": 7}}}},
            instance=instance,
        )
        assert res.success
        res = job.execute_in_process(
            asset_selection=[dg.AssetKey("flan_1m")], run_config={"ops": {"flan_1m": {"config": {"seed": 3}}}}, instance=instance
        )
        assert res.success
    reseeded = [r["id"] for _, r in iter_shard_records(out)]
    assert reseeded != order and sorted(reseeded) == sorted(order)
    flan_questions = lambda data: {r["question"] for r in pickle.loads(data)}
    assert flan_questions(flan_pkl.read_bytes()) != flan_questions(flan_first)


def test_a_single_chunk_run_warns_that_the_rest_is_missing(world, tmp_path, instance):
    with world_env(world, tmp_path / "data") as env:
        defs = _defs(env)
        job = defs.resolve_implicit_global_asset_job_def()
        job.execute_in_process(asset_selection=[dg.AssetKey("flan_1m"), dg.AssetKey("m3it_tasks")], instance=instance)
        res = job.execute_in_process(asset_selection=[dg.AssetKey("vflan_chunks")], partition_key="00042", instance=instance)
    assert res.success
    checks = _checks(res)
    assert checks["vflan_counts"] == (False, "WARN")
    assert checks["vflan_loader_contract"][0] and checks["vflan_record_schema"][0]
    out = registry_path("vflan", tmp_path / "data")
    assert sorted(p.name for p in out.iterdir()) == ["part-00042.count", "part-00042.pkl"]
