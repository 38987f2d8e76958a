"""The MMC4-core assets on the sample world (test scale): a ranged backfill over every sample shard,
read back the way VILA's LazyMMC4Dataset reads it; reruns, both filter policies, a low-yield shard
that fails its blocking check, and the partition sensor."""

import base64
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vila_assets.sample_world.world import world_env
from vila_assets.assets import mmc4
from vila_assets.core import vila_format as vf
from vila_assets.resources.config import default_resources
from vila_assets.sample_world.sources.mmc4 import write_low_yield_shard
from vila_assets.sample_world.world import SampleWorld

ALL = ("mmc4_annotations", "mmc4_images", "mmc4_core_shard")
SAMPLE_KEYS = ["00000", "00001", "00003"]  # index 2 is the planted gap


def _defs() -> dg.Definitions:
    # Our own module + the shared resources (read from the environment now), independent of other families.
    return dg.Definitions.merge(mmc4.defs, dg.Definitions(resources=default_resources()))


def _run(instance, keys, assets=ALL, run_config=None):
    instance.add_dynamic_partitions(mmc4.mmc4_shards.name, [k for k in keys if not instance.has_dynamic_partition(mmc4.mmc4_shards.name, k)])
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    job = _defs().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=[dg.AssetKey(a) for a in assets],
        tags=tags if len(keys) > 1 else None,
        partition_key=keys[0] if len(keys) == 1 else None,
        run_config=run_config,
        instance=instance,
        raise_on_error=False,
    )


def _checks(result) -> dict[str, object]:
    return {
        f"{e.event_specific_data.asset_key.to_user_string()}:{e.event_specific_data.check_name}": e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def _partition_metadata(instance, asset: str, key: str) -> dict:
    recs = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
    ).records
    assert recs, f"{asset} {key} was never materialized"
    return {k: getattr(v, "value", v) for k, v in recs[0].asset_materialization.metadata.items()}


def _pkl_dir(root: Path) -> Path:
    return vf.registry_path("mmc4core", root)


def _pair_bytes(root: Path) -> dict[str, bytes]:
    d = _pkl_dir(root)
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with SampleWorld(tmp_path_factory.mktemp("mmc4-world"), scale="test", families=["mmc4"], clip=False) as w:
        yield w


@pytest.fixture(scope="module")
def backfill(world, tmp_path_factory):
    """One ranged run of all three assets over every sample shard (all_or_nothing, default thresholds)."""
    root = tmp_path_factory.mktemp("mmc4-data")
    with dg.instance_for_test() as instance, world_env(world, root):
        result = _run(instance, SAMPLE_KEYS)
        yield root, instance, result


# --- the VILA loader, as LazyMMC4Dataset does it (world_size 1) -------------------------------------------


def lazy_mmc4_load(data_path: Path, world_size: int = 1, rank: int = 0) -> tuple[list[dict], int]:
    n_shards = len(os.listdir(data_path)) // 2
    count_info_list = sorted(f for f in os.listdir(data_path) if f.endswith(".count"))[:n_shards]
    n_samples = [int(open(data_path / f).read().strip()) for f in count_info_list]
    shared_size = n_shards // world_size
    gpu_samples = [sum(n_samples[i * shared_size:(i + 1) * shared_size]) for i in range(world_size)]
    shard_names = [d.replace(".count", ".pkl") for d in count_info_list][rank * shared_size:(rank + 1) * shared_size]
    data = []
    for name in shard_names:
        with open(data_path / name, "rb") as f:
            data.extend(pickle.load(f))
    return data, min(gpu_samples) * world_size


def lazy_mmc4_item(info: dict) -> tuple[str, list[Image.Image]]:
    """LazyMMC4Dataset.__getitem__'s text/image construction (v1), without the tokenizer."""
    sentences = [s.replace("<image>", "<IMAGE>") for s in info["text_list"]]
    images, sentence_ixs = [], []
    for sample_image, _sim_vec in zip(info["image_info"], info["similarity_matrix"]):
        rawbytes = base64.b64decode(sample_image["image_base64"])
        images.append(Image.open(io.BytesIO(rawbytes)).convert("RGB"))
        sentence_ixs.append(sample_image["matched_text_index"])
    images, sentence_ixs = images[:6], sentence_ixs[:6]
    images = [images[i] for i in np.argsort(sentence_ixs)]
    for ix in sentence_ixs:
        sentences[ix] = f"<image>{sentences[ix]}"
    text = " ".join(sentences).replace("<image> ", "<image>").replace(" <image>", "<image>")
    return text, images


# --- tests -------------------------------------------------------------------------------------------------


def test_backfill_over_all_sample_shards_gives_loader_valid_pickles(backfill):
    root, instance, result = backfill
    assert result.success
    checks = _checks(result)
    assert sorted(checks) == sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in
                                    _defs().resolve_asset_graph().asset_check_keys)
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items() if not c.passed}
    pkl_dir = _pkl_dir(root)
    stems = [f"docs_no_face_shard_{i}_v3" for i in (0, 1, 3)]
    assert sorted(os.listdir(pkl_dir)) == sorted([f"{s}.count" for s in stems] + [f"{s}.pkl" for s in stems])
    assert vf.validate_shard_dir(pkl_dir) == []

    data, n_samples = lazy_mmc4_load(pkl_dir)
    assert n_samples == len(data) > 0  # .count sums equal what the pickles hold
    for i in range(n_samples):
        info = data[i]
        n_images = min(len(info["image_info"]), 6)
        text, images = lazy_mmc4_item(info)
        assert len(images) == n_images >= 1  # zip with similarity_matrix drops nothing
        assert text.count("<image>") == n_images
        assert all(img.mode == "RGB" and min(img.size) <= 336 for img in images)
    # docs keep their original line order within a shard
    for stem, key in zip(stems, SAMPLE_KEYS):
        with open(pkl_dir / f"{stem}.pkl", "rb") as fh:
            urls = [d["url"] for d in pickle.load(fh)]
        manifest = pq.read_table(root / "manifests" / "mmc4" / "docs" / f"{key}.parquet").to_pylist()
        kept_lines = [r["line"] for r in manifest if r["status"] == "kept"]
        assert kept_lines == sorted(kept_lines) and len(kept_lines) == len(urls)


def test_metadata_shows_yields_statuses_and_invalid_docs(backfill):
    root, instance, _ = backfill
    ann = _partition_metadata(instance, "mmc4_annotations", "00000")
    assert ann["docs_invalid"] == 3 and ann["docs"] == ann["docs_valid"] + 3
    examples = ann["invalid_examples"]
    assert any(e.endswith(":3: bad JSON (Unterminated string starting at)") for e in examples), examples
    assert any(":4: missing text_list" in e for e in examples)
    assert any(":6: image_info[0].matched_text_index" in e and "out of range" in e for e in examples)
    for key in SAMPLE_KEYS:
        images = _partition_metadata(instance, "mmc4_images", key)
        core = _partition_metadata(instance, "mmc4_core_shard", key)
        assert 0.4 <= images["image_yield"] <= 1.0 and "| ok |" in images["statuses"]
        assert core["docs_out"] == vf.read_count(_pkl_dir(root) / f"docs_no_face_shard_{int(key)}_v3.count")
        assert core["doc_yield"] == round(core["docs_out"] / core["docs_in"], 4)
    # the invalid lines are in the per-doc manifest too, with file:line
    docs = pq.read_table(root / "manifests" / "mmc4" / "docs" / "00000.parquet").to_pylist()
    invalid = [d for d in docs if d["status"] == "invalid"]
    assert [d["where"].rsplit(":", 1)[1] for d in invalid] == ["3", "4", "6"]
    assert all(d["reason"] for d in invalid)


def test_extensionless_and_query_string_urls_are_not_lost(backfill):
    root, _, _ = backfill
    urls = [info["raw_url"] for _, rec in vf.iter_shard_records(_pkl_dir(root)) for info in rec["image_info"]]
    extensionless = [u for u in urls if "/p/" in u and "?" not in u]
    with_query = [u for u in urls if "?" in u]
    assert extensionless and with_query
    manifest = pq.read_table(root / "manifests" / "mmc4" / "images" / "00001.parquet").to_pylist()
    assert all(r["status"] == "ok" for r in manifest if "?" in r["url"] or "/p/" in r["url"])


def test_exact_duplicates_are_removed_and_near_duplicates_reported(backfill):
    root, instance, _ = backfill
    docs = pq.read_table(root / "manifests" / "mmc4" / "docs" / "00001.parquet").to_pylist()
    assert any("duplicate" in d["image_fates"] for d in docs)
    with open(_pkl_dir(root) / "docs_no_face_shard_1_v3.pkl", "rb") as fh:
        blobs = [i["image_base64"] for d in pickle.load(fh) for i in d["image_info"]]
    assert len(blobs) == len(set(blobs))
    assert _partition_metadata(instance, "mmc4_core_shard", "00001")["near_duplicate_rate"] > 0
    # the dead host's placeholder appears twice in shard 3; only one survives
    docs3 = pq.read_table(root / "manifests" / "mmc4" / "docs" / "00003.parquet").to_pylist()
    assert [d["image_fates"] for d in docs3[-2:]] == [["ok"], ["duplicate"]]


def test_rerun_with_a_fresh_crawl_is_byte_identical(backfill, world):
    root, instance, _ = backfill
    before = _pair_bytes(root)
    with world_env(world, root):
        again = _run(instance, ["00001"], run_config={"ops": {"mmc4_images": {"config": {"recrawl": True}}}})
        assert again.success
        assert _partition_metadata(instance, "mmc4_images", "00001")["reused_crawl"] is False
        reused = _run(instance, SAMPLE_KEYS)
        assert reused.success
        assert all(_partition_metadata(instance, "mmc4_images", k)["reused_crawl"] is True for k in SAMPLE_KEYS)
    assert _pair_bytes(root) == before


def test_partial_policy_keeps_docs_with_surviving_images(backfill, world, tmp_path):
    root, _, _ = backfill
    strict = {k: pq.read_table(root / "manifests" / "mmc4" / "docs" / f"{k}.parquet").to_pylist() for k in SAMPLE_KEYS}
    copy = tmp_path / "data"
    shutil.copytree(root / "staging", copy / "staging")
    with dg.instance_for_test() as instance, world_env(world, copy):
        result = _run(instance, SAMPLE_KEYS, assets=("mmc4_core_shard",),
                      run_config={"ops": {"mmc4_core_shard": {"config": {"filter_policy": "partial"}}}})
        assert result.success and all(c.passed for c in _checks(result).values())
    rescued = 0
    for key in SAMPLE_KEYS:
        partial = pq.read_table(copy / "manifests" / "mmc4" / "docs" / f"{key}.parquet").to_pylist()
        with open(_pkl_dir(copy) / f"docs_no_face_shard_{int(key)}_v3.pkl", "rb") as fh:
            records = {r["url"]: r for r in pickle.load(fh)}
        for s, p in zip(strict[key], partial):
            if s["status"] == "dropped" and "ok" in s["image_fates"]:
                assert p["status"] == "kept" and p["kept_images"] == [i for i, f in enumerate(s["image_fates"]) if f == "ok"]
                rescued += 1
    assert rescued >= 1, "the sample world should have a doc that only partial keeps"
    for _, rec in vf.iter_shard_records(_pkl_dir(copy)):
        assert len(rec["similarity_matrix"]) == len(rec["image_info"]) >= 1
        assert all(0 <= i["matched_text_index"] < len(rec["text_list"]) for i in rec["image_info"])
    assert vf.validate_shard_dir(_pkl_dir(copy)) == []


def test_low_yield_shard_fails_its_check_and_blocks_downstream(world, tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_low_yield_shard(source, world.image_base, index=9)
    monkeypatch.setenv("VILA_MMC4_SOURCE", str(source))
    root = tmp_path / "data"
    with dg.instance_for_test() as instance, world_env(world, root):
        listing = mmc4.Mmc4Source().listing(_defs().resources["hub"])
        assert list(listing.shards) == ["00009"]
        result = _run(instance, ["00009"])
        assert not result.success
        check = _checks(result)["mmc4_images:image_yield_above_threshold"]
        assert not check.passed and "00009" in check.description
        assert check.metadata["failing_shards"].value["00009"] < 0.4
        # the yield is real: the manifest says the same
        manifest = pq.read_table(root / "manifests" / "mmc4" / "images" / "00009.parquet").to_pylist()
        ok = sum(r["status"] == "ok" for r in manifest)
        assert round(ok / len(manifest), 4) == check.metadata["failing_shards"].value["00009"]
        # blocked: the shard never reaches VILA's directory
        assert not instance.get_materialized_partitions(dg.AssetKey("mmc4_core_shard"))
        assert not _pkl_dir(root).exists() or not os.listdir(_pkl_dir(root))
        skipped = [e for e in result.all_events if e.step_key == "mmc4_core_shard" and e.event_type_value == "STEP_SUCCESS"]
        assert not skipped


def test_sensor_registers_new_shards_once(world, tmp_path):
    with dg.instance_for_test() as instance, world_env(world, tmp_path):
        resources = _defs().resources
        ctx = dg.build_sensor_context(instance=instance, resources={"hub": resources["hub"], "mmc4_source": mmc4.Mmc4Source()})
        first = mmc4.mmc4_shard_sensor(ctx)
        assert isinstance(first, dg.SensorResult)
        (request,) = first.dynamic_partitions_requests
        assert list(request.partition_keys) == SAMPLE_KEYS
        instance.add_dynamic_partitions(mmc4.mmc4_shards.name, list(request.partition_keys))
        second = mmc4.mmc4_shard_sensor(dg.build_sensor_context(instance=instance, resources={"hub": resources["hub"], "mmc4_source": mmc4.Mmc4Source()}))
        assert isinstance(second, dg.SkipReason)


def test_source_json_pins_the_hub_revision(backfill):
    root, instance, _ = backfill
    source = json.loads((root / "staging" / "mmc4" / "00000" / "source.json").read_text())
    assert source["file"] == "docs_no_face_shard_0_v3.jsonl.zip" and len(source["revision"]) == 40
    run_md = _partition_metadata(instance, "mmc4_annotations", "00000")
    assert run_md["revision"] == source["revision"]
