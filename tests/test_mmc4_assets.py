"""The MMC4-core assets on the sample world (test scale): a ranged backfill over every sample shard,
read back the way VILA's LazyMMC4Dataset reads it; reruns, both data policies, the world-size check, a
low-yield shard that fails its blocking check, a remote data root, and the partition sensor."""

import base64
import io
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.dagster_runs import (
    check_results,
    defs_for,
    failure_text,
    materializations,
    op_config,
    partition_metadata,
    profile_for,
    run,
)
from vila_assets.assets.mmc4 import (
    Mmc4Source,
    mmc4_annotations,
    mmc4_core_shard,
    mmc4_images,
    mmc4_shard_sensor,
    mmc4_shards,
)
from vila_assets.assets.mmc4.layout import Mmc4Layout
from vila_assets.core import vila_format as vf
from vila_assets.definitions import build_definitions
from vila_assets.profiles import data_root_at
from vila_assets.resources.storage import FsspecDataRoot
from vila_assets.sample_world.sources.mmc4 import REPO, shard_name, write_low_yield_shard
from vila_assets.sample_world.world import SampleWorld

ALL = ("mmc4_annotations", "mmc4_images", "mmc4_core_shard")
SAMPLE_KEYS = ["00000", "00001", "00003", "00005"]  # indices 2 and 4 are the planted gaps
WORLD_SIZE = 4  # the sample world profile's data_policy.train_world_size
MMC4_CHECKS = sorted(f"{s.asset_key.to_user_string()}:{s.name}"
                     for a in (mmc4_annotations, mmc4_images, mmc4_core_shard) for s in a.check_specs)


def _register(instance: dg.DagsterInstance, keys) -> None:
    instance.add_dynamic_partitions(mmc4_shards.name, [k for k in keys
                                                       if not instance.has_dynamic_partition(mmc4_shards.name, k)])


def _layout(root: Path) -> Mmc4Layout:
    return Mmc4Layout(data_root_at(str(root)))


def _stem(key: str) -> str:
    return f"docs_no_face_shard_{int(key)}_v3"


def _pair_bytes(layout: Mmc4Layout) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(layout.pkl_dir.iterdir())}


def _docs(layout: Mmc4Layout, key: str) -> list[dict]:
    return pq.read_table(layout.docs_manifest(key)).to_pylist()


@dataclass
class Backfill:
    layout: Mmc4Layout
    defs: dg.Definitions
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def mmc4_world(tmp_path_factory):
    """A test-scale world of the MMC4 source only (no CLIP model: nothing here scores images)."""
    with SampleWorld(tmp_path_factory.mktemp("mmc4-world"), scale="test", clip=False, families=["mmc4"]) as world:
        yield world


@pytest.fixture(scope="module")
def backfill(mmc4_world, tmp_path_factory):
    """One ranged run of all three assets over every sample shard (the profile's policy, curated, and
    default thresholds)."""
    root = tmp_path_factory.mktemp("mmc4-data")
    defs = defs_for(mmc4_world, root)
    with dg.instance_for_test() as instance:
        _register(instance, SAMPLE_KEYS)
        yield Backfill(_layout(root), defs, instance, run(defs, instance, ALL, SAMPLE_KEYS))


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


# --- the backfill ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_backfill_over_all_sample_shards_gives_loader_valid_pickles(backfill):
    assert backfill.result.success, failure_text(backfill.result)
    checks = {k: v for k, v in check_results(backfill.result).items() if k.startswith("mmc4_")}
    assert sorted(checks) == MMC4_CHECKS
    per_shard = {k: c for k, c in checks.items() if not k.endswith(":usable_at_train_world_size")}
    assert all(c.passed for c in per_shard.values()), {k: c.description for k, c in per_shard.items() if not c.passed}
    assert all(c.metadata["checked"].value == len(SAMPLE_KEYS) for c in per_shard.values())  # every shard, one result
    pkl_dir = backfill.layout.pkl_dir
    stems = [_stem(k) for k in SAMPLE_KEYS]
    assert sorted(os.listdir(pkl_dir)) == sorted([f"{s}.count" for s in stems] + [f"{s}.pkl" for s in stems])
    assert vf.validate_shard_dir(pkl_dir) == []

    data, n_samples = lazy_mmc4_load(pkl_dir)
    assert n_samples == len(data) > 0  # .count sums equal what the pickles hold
    for info in data:
        n_images = min(len(info["image_info"]), 6)
        text, images = lazy_mmc4_item(info)
        assert len(images) == n_images >= 1  # zip with similarity_matrix drops nothing
        assert text.count("<image>") == n_images
        assert all(img.mode == "RGB" and min(img.size) <= 336 for img in images)
    # docs keep their original line order within a shard
    for key in SAMPLE_KEYS:
        with open(backfill.layout.pkl(_stem(key)), "rb") as fh:
            urls = [d["url"] for d in pickle.load(fh)]
        kept_lines = [r["line"] for r in _docs(backfill.layout, key) if r["status"] == "kept"]
        assert kept_lines == sorted(kept_lines) and len(kept_lines) == len(urls)


@pytest.mark.slow
def test_metadata_shows_yields_statuses_and_invalid_docs(backfill):
    instance, layout = backfill.instance, backfill.layout
    ann = partition_metadata(instance, "mmc4_annotations", "00000")
    assert ann["docs_invalid"] == 3 and ann["docs"] == ann["docs_valid"] + 3
    examples = ann["invalid_examples"]
    assert any(e.endswith(":3: bad JSON (Unterminated string starting at)") for e in examples), examples
    assert any(":4: missing text_list" in e for e in examples)
    assert any(":6: image_info[0].matched_text_index" in e and "out of range" in e for e in examples)
    assert "missing text_list" in ann["invalid_reasons"]
    for key in SAMPLE_KEYS:
        images = partition_metadata(instance, "mmc4_images", key)
        core = partition_metadata(instance, "mmc4_core_shard", key)
        assert 0.4 <= images["image_yield"] <= 1.0 and "| ok |" in images["statuses"]
        assert core["docs_out"] == vf.read_count(layout.count(_stem(key)))
        assert core["doc_yield"] == round(core["docs_out"] / core["docs_in"], 4)
    run_md = materializations(backfill.result)
    assert run_md["mmc4_core_shard"]["shards_in_run"] == len(SAMPLE_KEYS)
    assert run_md["mmc4_core_shard"]["docs_out_in_run"] == sum(
        vf.read_count(layout.count(_stem(k))) for k in SAMPLE_KEYS)
    # the invalid lines are in the per-doc manifest too, with file:line
    invalid = [d for d in _docs(layout, "00000") if d["status"] == "invalid"]
    assert [d["where"].rsplit(":", 1)[1] for d in invalid] == ["3", "4", "6"]
    assert all(d["reason"] for d in invalid)


@pytest.mark.slow
def test_extensionless_and_query_string_urls_are_not_lost(backfill):
    layout = backfill.layout
    urls = [info["raw_url"] for _, rec in vf.iter_shard_records(layout.pkl_dir) for info in rec["image_info"]]
    extensionless = [u for u in urls if "/p/" in u and "?" not in u]
    with_query = [u for u in urls if "?" in u]
    assert extensionless and with_query
    manifest = pq.read_table(layout.images_manifest("00001")).to_pylist()
    assert all(r["status"] == "ok" for r in manifest if "?" in r["url"] or "/p/" in r["url"])


@pytest.mark.slow
def test_exact_duplicates_are_removed_and_near_duplicates_reported(backfill):
    layout = backfill.layout
    assert any("duplicate" in d["image_fates"] for d in _docs(layout, "00001"))
    with open(layout.pkl(_stem("00001")), "rb") as fh:
        # one image per URL of a doc (a URL in two slots serves both with the same image)
        blobs = [i["image_base64"] for d in pickle.load(fh) for i in {x["raw_url"]: x for x in d["image_info"]}.values()]
    assert len(blobs) == len(set(blobs))
    assert partition_metadata(backfill.instance, "mmc4_core_shard", "00001")["near_duplicate_rate"] > 0
    # the dead host's placeholder appears twice in shard 3; only one survives
    assert [d["image_fates"] for d in _docs(layout, "00003")[-2:]] == [["ok"], ["duplicate"]]


@pytest.mark.slow
def test_source_json_pins_the_hub_revision(backfill):
    source = json.loads(backfill.layout.source("00000").read_text())
    assert source["file"] == "docs_no_face_shard_0_v3.jsonl.zip" and len(source["revision"]) == 40
    assert source["stem"] == _stem("00000")
    assert partition_metadata(backfill.instance, "mmc4_annotations", "00000")["revision"] == source["revision"]


@pytest.mark.slow
def test_rerun_with_a_fresh_crawl_is_byte_identical(backfill):
    defs, instance, layout = backfill.defs, backfill.instance, backfill.layout
    before = _pair_bytes(layout)
    again = run(defs, instance, ALL, ["00001"], run_config=op_config("mmc4_images", recrawl=True))
    assert again.success, failure_text(again)
    assert partition_metadata(instance, "mmc4_images", "00001")["reused_crawl"] is False
    reused = run(defs, instance, ALL, SAMPLE_KEYS)
    assert reused.success, failure_text(reused)
    assert all(partition_metadata(instance, "mmc4_images", k)["reused_crawl"] is True for k in SAMPLE_KEYS)
    assert _pair_bytes(layout) == before


@pytest.mark.slow
def test_world_size_check_reports_what_vilas_loader_reads(backfill):
    """At the profile's world size (4 ranks, one shard each) every rank is cut to the shortest: the check
    reports the loss over the whole published pkl-core, and a warning is all it raises."""
    check = check_results(backfill.result)["mmc4_core_shard:usable_at_train_world_size"]
    assert check.severity == dg.AssetCheckSeverity.WARN
    _, usable = lazy_mmc4_load(backfill.layout.pkl_dir, world_size=WORLD_SIZE)
    total = sum(vf.read_count(backfill.layout.count(_stem(k))) for k in SAMPLE_KEYS)
    md = {k: v.value for k, v in check.metadata.items()}
    assert (md["world_size"], md["total_records"], md["usable_records"]) == (WORLD_SIZE, total, usable)
    assert md["lost_records"] == total - usable
    assert check.passed == (usable / total >= md["bound"])
    run_md = materializations(backfill.result)["mmc4_core_shard"]
    assert run_md["policy"] == "curated" and run_md["train_world_size"] == WORLD_SIZE
    assert run_md["usable_records_at_world_size"] == usable


@pytest.mark.slow
def test_one_url_in_two_slots_is_one_download_and_the_doc_survives(backfill):
    layout = backfill.layout
    crawl_input = pq.read_table(layout.crawl_input("00001")).to_pylist()
    with open(layout.pkl(_stem("00001")), "rb") as fh:
        (doc,) = [d for d in pickle.load(fh) if d["url"] == "http://reuse.example.com/gallery"]
    first, second = doc["image_info"]
    assert first["raw_url"] == second["raw_url"] and first["image_base64"] == second["image_base64"]
    assert sum(r["url"] == first["raw_url"] for r in crawl_input) == 1  # one download served both slots
    assert partition_metadata(backfill.instance, "mmc4_core_shard", "00001")["shared_url_slots"] == 1


@pytest.mark.slow
def test_vila_policy_is_all_or_nothing_without_dedup(backfill, mmc4_world, tmp_path):
    """The same crawl merged under the vila policy (per-run resource config): every kept doc has all its
    images, duplicates stay, docs with extensionless URLs are lost as in VILA, and fewer docs survive
    than under curated."""
    curated = {k: _docs(backfill.layout, k) for k in SAMPLE_KEYS}
    copy = _layout(tmp_path / "data")
    for key in SAMPLE_KEYS:
        shutil.copytree(backfill.layout.shard_dir(key), copy.shard_dir(key))
    vila = {"resources": {"data_policy": {"config": {"policy": "vila", "train_world_size": WORLD_SIZE}}}}
    with dg.instance_for_test() as instance:
        _register(instance, SAMPLE_KEYS)
        result = run(defs_for(mmc4_world, copy.data_root.path()), instance, ["mmc4_core_shard"], SAMPLE_KEYS,
                     run_config=vila)
        assert result.success, failure_text(result)
        assert check_results(result)["mmc4_core_shard:no_exact_duplicate_images"].passed  # counted, not enforced
        assert materializations(result)["mmc4_core_shard"]["policy"] == "vila"
    partial = 0
    for key in SAMPLE_KEYS:
        for c, v in zip(curated[key], _docs(copy, key)):
            if v["status"] == "kept":
                assert v["kept_images"] == list(range(v["n_images"]))
            if c["status"] == "kept" and c["n_images_kept"] < c["n_images"]:
                assert v["status"] == "dropped"  # partial docs are curated's
                partial += 1
    assert partial >= 1, "the sample world should have a doc that only curated keeps"
    # the placeholder twice in shard 3: both docs kept under vila
    assert [d["status"] for d in _docs(copy, "00003")[-2:]] == ["kept", "kept"]
    assert vf.validate_shard_dir(copy.pkl_dir) == []
    urls = [i["raw_url"] for _, rec in vf.iter_shard_records(copy.pkl_dir) for i in rec["image_info"]]
    assert urls and not any("/p/" in u for u in urls)  # VILA's downloader cannot name these files
    assert sum(vf.read_count(copy.count(_stem(k))) for k in SAMPLE_KEYS) < sum(
        vf.read_count(backfill.layout.count(_stem(k))) for k in SAMPLE_KEYS)


# --- a low-yield shard in a range --------------------------------------------------------------------------

LOW_YIELD_KEYS = ["00003", "00009"]
MIN_IMAGE_YIELD = 0.35  # not the production default: the bound must come from this run's config


@dataclass
class LowYieldRun:
    layout: Mmc4Layout
    defs: dg.Definitions
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def low_yield(mmc4_world, tmp_path_factory):
    """A directory source with a good shard (3, copied from the world's repo) and a mostly dead one (9),
    run as one range with the image-yield bound set in run config."""
    source = tmp_path_factory.mktemp("mmc4-low-yield-source")
    # the real zipped shard beside a plain .jsonl (the form VILA's downloader reads): both are read
    shutil.copy(mmc4_world.hub_root / "datasets" / REPO / shard_name(3, zipped=True), source)
    write_low_yield_shard(source, mmc4_world.image_base, index=9)
    root = tmp_path_factory.mktemp("mmc4-low-yield-data")
    defs = defs_for(mmc4_world, root, mmc4_source=Mmc4Source(location=str(source)))
    with dg.instance_for_test() as instance:
        _register(instance, LOW_YIELD_KEYS)
        result = run(defs, instance, ALL, LOW_YIELD_KEYS,
                     run_config=op_config("mmc4_images", checks={"min_image_yield": MIN_IMAGE_YIELD}))
        yield LowYieldRun(_layout(root), defs, instance, result)


@pytest.mark.slow
def test_image_yield_check_names_the_failing_shard_of_the_range(low_yield):
    check = check_results(low_yield.result)["mmc4_images:image_yield_above_threshold"]
    assert not check.passed
    assert check.metadata["checked"].value == 2 and check.metadata["failing"].value == 1
    assert list(check.metadata["failing_examples"].value) == ["00009"]
    assert "00009" in check.description and "00003" not in check.description
    assert check.metadata["bound"].value == MIN_IMAGE_YIELD
    # the yield is real: the manifest says the same
    manifest = pq.read_table(low_yield.layout.images_manifest("00009")).to_pylist()
    ok = sum(r["status"] == "ok" for r in manifest)
    assert check.metadata["worst_subject"].value == "00009"
    assert check.metadata["worst_value"].value == round(ok / len(manifest), 4) < MIN_IMAGE_YIELD
    assert partition_metadata(low_yield.instance, "mmc4_images", "00003")["image_yield"] >= MIN_IMAGE_YIELD


@pytest.mark.slow
def test_low_yield_shard_blocks_downstream_for_the_range(low_yield):
    result = low_yield.result
    assert not result.success
    # blocked: neither shard of the range reaches VILA's directory
    assert not low_yield.instance.get_materialized_partitions(dg.AssetKey("mmc4_core_shard"))
    pkl_dir = low_yield.layout.pkl_dir
    assert not pkl_dir.exists() or not os.listdir(pkl_dir)
    assert not [e for e in result.all_events
                if e.step_key == "mmc4_core_shard" and e.event_type_value == "STEP_SUCCESS"]


@pytest.mark.slow
def test_image_yield_bound_comes_from_run_config(low_yield):
    """The same shards pass with a lower bound in run config (the crawl is reused: same data)."""
    again = run(low_yield.defs, low_yield.instance, ["mmc4_images"], LOW_YIELD_KEYS,
                run_config=op_config("mmc4_images", checks={"min_image_yield": 0.0}))
    check = check_results(again)["mmc4_images:image_yield_above_threshold"]
    assert again.success and check.passed and check.metadata["bound"].value == 0.0
    assert partition_metadata(low_yield.instance, "mmc4_images", "00009")["reused_crawl"] is True


# --- a remote data root -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_remote_root_publishes_the_pair_and_a_second_machine_fetches_inputs(mmc4_world, tmp_path):
    """Shard 3 annotated and crawled on one working copy, written to VILA's directory from another: the
    second fetches what the first published, and only the .pkl/.count pair lands in pkl-core."""
    import fsspec

    url = "memory://mmc4-remote/vila"
    first = FsspecDataRoot(url_root=url, local_cache=str(tmp_path / "a"))
    second = FsspecDataRoot(url_root=url, local_cache=str(tmp_path / "b"))
    with dg.instance_for_test() as instance:
        _register(instance, ["00003"])
        # the profile over a DataRoot resource (defs_for takes a local path)
        upstream = run(build_definitions(mmc4_world.profile(first)), instance,
                       ["mmc4_annotations", "mmc4_images"], ["00003"])
        assert upstream.success, failure_text(upstream)
        core = run(build_definitions(mmc4_world.profile(second)), instance, ["mmc4_core_shard"], ["00003"])
        assert core.success, failure_text(core)
    fs, base = fsspec.core.url_to_fs(url)
    remote_pkl_dir = f"{base}/{Mmc4Layout(second).pkl_dir.relative_to(second.path()).as_posix()}"
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(remote_pkl_dir)) == [
        f"{_stem('00003')}.count", f"{_stem('00003')}.pkl"]
    layout = Mmc4Layout(second)
    assert fs.exists(f"{base}/{second.relpath(layout.docs_manifest('00003'))}")
    assert fs.cat_file(f"{base}/{second.relpath(layout.pkl(_stem('00003')))}") == layout.pkl(_stem("00003")).read_bytes()
    # the world-size check counts what was published under the URL (read from the remote .count files)
    usable = check_results(core)["mmc4_core_shard:usable_at_train_world_size"].metadata
    assert usable["total_records"].value == vf.read_count(layout.count(_stem("00003"))) and usable["shards"].value == 1


# --- partition discovery --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sensor_registers_new_shards_once(mmc4_world, tmp_path):
    resources = profile_for(mmc4_world, tmp_path).resources
    sensor_resources = {"hub": resources["hub"], "mmc4_source": resources["mmc4_source"]}
    with dg.instance_for_test() as instance:
        first = mmc4_shard_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources))
        assert isinstance(first, dg.SensorResult)
        (request,) = first.dynamic_partitions_requests
        assert list(request.partition_keys) == SAMPLE_KEYS
        instance.add_dynamic_partitions(mmc4_shards.name, list(request.partition_keys))
        second = mmc4_shard_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources))
        assert isinstance(second, dg.SkipReason)
