"""COYO assets on the sample world: metadata -> selection -> crawl -> tiny-CLIP re-score -> split."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import uuid
from pathlib import Path

import dagster as dg
import fsspec
import polars as pl
import pytest

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
from vila_assets.assets.coyo.layout import CoyoLayout
from vila_assets.core import coyo
from vila_assets.core.coyo_rescore import DROP_BELOW
from vila_assets.core.train_layout import usable_records
from vila_assets.core.vila_format import decode_base64_image, loader_shards
from vila_assets.definitions import build_definitions
from vila_assets.profiles import data_root_at
from vila_assets.resources.clip import ClipScorer
from vila_assets.resources.storage import FsspecDataRoot

RANGE = ("00000", "00001", "00002")  # the big two and the shortfall one
SHARD_ASSETS = ["coyo_metadata_shard", "coyo_selection", "coyo_images", "coyo_clip_scored"]
SPLIT_OF_8 = op_config("coyo_split", samples_per_part=8, checks={"decode_per_part": 1000})

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coyo_run(sample_world, tmp_path_factory):
    """One ranged run over three shards, then the split into parts of at most 8 (the default curated policy,
    the sample world's training world size of 4)."""
    data_root = tmp_path_factory.mktemp("coyo") / "data"
    defs = defs_for(sample_world, data_root)
    with dg.instance_for_test() as instance:
        shards = run(defs, instance, SHARD_ASSETS, RANGE)
        split = run(defs, instance, ["coyo_split"], run_config=SPLIT_OF_8)
        yield {"world": sample_world, "data_root": data_root, "layout": CoyoLayout(data_root_at(str(data_root))),
               "instance": instance, "defs": defs, "shards": shards, "split": split}


def _manifests(layout: CoyoLayout) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(layout.samples_manifest(k)).with_columns(pl.lit(k).alias("shard"))
                      for k in RANGE])


def _planted(man: pl.DataFrame) -> pl.DataFrame:
    """Classify each downloaded pair from its URL: placeholder, mismatched caption, or matching photo."""
    def kind(url: str, text: str) -> str:
        if "/placeholder/" in url:
            return "placeholder"
        m = re.search(r"/photo/(\w+)/(\w+)/", url)
        if m and text != f"a photo of a {m[1]} {m[2]}":
            return "mismatch"
        return "match" if m else "other"

    return man.with_columns(
        pl.struct("url", "text").map_elements(lambda r: kind(r["url"], r["text"]), return_dtype=pl.String).alias("kind")
    )


def test_ranged_run_succeeds_and_checks_report(coyo_run):
    res = coyo_run["shards"]
    assert res.success, failure_text(res)
    checks = check_results(res)
    for name in ("coyo_selection:selection_correct", "coyo_images:download_yield",
                 "coyo_clip_scored:fresh_score_distribution", "coyo_clip_scored:duplicate_rates_bounded"):
        assert checks[name].passed, (name, checks[name].description)
        assert checks[name].metadata["checked"].value == len(RANGE)  # one result covers the range
    # Shard 00002 has too few rows above the gate: reported (a WARN check), not a crash as in VILA.
    short = checks["coyo_selection:enough_rows_pass_gate"]
    assert not short.passed and short.severity == dg.AssetCheckSeverity.WARN
    assert "00002: " in short.description and "short of 8" in short.description
    assert "00000" not in short.description and "00001" not in short.description
    # Shard 00001 repeats two ids: named (a WARN check), one row per id kept under the default curated policy.
    repeats = checks["coyo_selection:ids_unique"]
    assert not repeats.passed and repeats.severity == dg.AssetCheckSeverity.WARN
    assert "00001: 2 row(s) repeat an id" in repeats.description and "2 left out" in repeats.description
    inst = coyo_run["instance"]
    for asset in SHARD_ASSETS:
        assert inst.get_materialized_partitions(dg.AssetKey(asset)) == set(RANGE)
    assert re.fullmatch(r"[0-9a-f]{40}", materializations(res)["coyo_metadata_shard"]["sha"])
    assert partition_metadata(inst, "coyo_selection", "00000")["selected"] == 40


def test_fresh_threshold_is_the_clip_resources_and_the_histogram_is_in_the_check(coyo_run):
    from vila_assets.sample_world.tiny_clip import TINY_CLIP_THRESHOLD

    md = materializations(coyo_run["shards"])["coyo_clip_scored"]
    assert md["threshold"] == TINY_CLIP_THRESHOLD
    assert partition_metadata(coyo_run["instance"], "coyo_clip_scored", "00000")["threshold"] == TINY_CLIP_THRESHOLD
    hist = check_results(coyo_run["shards"])["coyo_clip_scored:fresh_score_distribution"].metadata["histogram"].value
    assert hist.startswith("![scores](data:image/png;base64,") and "← threshold" in hist
    for key in RANGE:  # the report PNGs a person opens
        assert coyo_run["layout"].fresh_scores_png(key).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rescore_removes_planted_placeholders_and_mismatches_and_keeps_real_pairs(coyo_run):
    man = _planted(_manifests(coyo_run["layout"]))
    ok = man.filter(pl.col("crawl_status") == "ok")
    bad = ok.filter(pl.col("kind").is_in(["placeholder", "mismatch"]))
    good = ok.filter(pl.col("kind") == "match")
    assert bad.height >= 15 and good.height >= 30
    assert (~bad["kept"]).mean() >= 0.95
    assert good["kept"].mean() >= 0.9  # the threshold is not simply dropping everything
    # Every selected row is accounted for with a reason when not kept.
    assert man.filter(~pl.col("kept"))["drop_reason"].null_count() == 0
    assert set(man.filter(pl.col("crawl_status") != "ok")["drop_reason"].unique()) <= {
        f"crawl: {s}" for s in ("failed_download", "failed_decode", "blocked", "opted_out", "filtered")
    }


def test_per_shard_pickle_is_vila_records_in_rank_order(coyo_run):
    layout = coyo_run["layout"]
    for key in RANGE:
        with open(layout.shard_pickle(key), "rb") as fh:
            records = pickle.load(fh)
        man = pl.read_parquet(layout.samples_manifest(key)).filter(pl.col("kept"))
        assert [r["id"] for r in records] == man["id"].to_list()
        assert man["rank"].is_sorted()
        for r in records:
            assert set(r) == {"id", "url", "text", "clip_sim", "image"} and r["clip_sim"] > 0.6
            assert decode_base64_image(r["image"]).mode == "RGB"


def test_curated_split_parts_lose_no_record_at_the_world_size_and_read_like_lazycoyodataset(coyo_run):
    res = coyo_run["split"]
    assert res.success, failure_text(res)
    checks = check_results(res)
    assert checks["coyo_split:vila_contract"].passed
    out = coyo_run["layout"].split_dir()
    assert out == coyo_run["data_root"] / "playground" / "data" / "coyo-700m" / "pkl02-split"
    names = os.listdir(out)
    assert all(re.fullmatch(r"part-\d{5}\.(pkl|count)", n) for n in names)
    shards = loader_shards(out)
    sizes = [s.count for s in shards]
    # the sample world profile trains on 4 ranks: a multiple of 4 parts of at most 8, every record usable
    assert len(shards) == len(names) // 2 and len(shards) % 4 == 0 and max(sizes) <= 8
    world = checks["coyo_split:train_world_size"]
    assert world.passed and world.metadata["lost"].value == 0 and world.metadata["world_size"].value == 4
    assert usable_records(sizes, 4, 4).usable == sum(sizes)
    kept = _manifests(coyo_run["layout"]).filter(pl.col("kept"))
    ids = []
    for s in shards:  # LazyCoyoDataset: counts index the loaded list; text (or caption) + base64 JPEG -> RGB
        with open(s.pkl, "rb") as fh:
            data = pickle.load(fh)
        for i in range(s.count):
            rec = data[i]
            assert isinstance(rec.get("text", rec.get("caption")), str)
            assert decode_base64_image(rec["image"]).mode == "RGB"
            ids.append(rec["id"])
    in_order = kept.sort(["shard", "rank"])["id"].to_list()  # shard order, then rank
    md = materializations(res)["coyo_split"]
    assert md["policy"] == "curated" and md["records"] == kept.height and md["dropped"] == 0
    assert ids == in_order + in_order[: md["padded"]]  # every kept record, then the first ones repeated
    assert sum(sizes) == md["samples"] == kept.height + md["padded"]
    manifest = pl.read_parquet(coyo_run["layout"].split_manifest())
    assert manifest["id"].to_list() == ids and manifest["repeat"].sum() == md["padded"]
    assert md["shards_used"] == 3 and md["shards_missing"] == 125
    assert md["missing_shards"] == "00003-00127"


def test_rerun_gives_identical_selection_and_split_and_removes_stale_parts(coyo_run):
    layout, defs, inst = coyo_run["layout"], coyo_run["defs"], coyo_run["instance"]
    sel_before = {k: layout.selection(k).read_bytes() for k in RANGE}
    out = layout.split_dir()
    split_before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run(defs, inst, ["coyo_selection"], RANGE)
    assert res.success, failure_text(res)
    assert {k: layout.selection(k).read_bytes() for k in RANGE} == sel_before
    assert run(defs, inst, ["coyo_split"], run_config=SPLIT_OF_8).success
    assert {p.name: p.read_bytes() for p in out.iterdir()} == split_before
    res = run(defs, inst, ["coyo_split"], run_config=op_config("coyo_split", samples_per_part=1000))
    assert res.success, failure_text(res)
    assert sorted(os.listdir(out)) == sorted(f"part-{i:05d}.{e}" for i in range(4) for e in ("pkl", "count"))
    assert run(defs, inst, ["coyo_split"], run_config=SPLIT_OF_8).success  # leave the 8-per-part split in place


def test_a_stricter_clip_resource_drops_every_pair_below_its_threshold(coyo_run, tmp_path):
    """The threshold is the clip resource's min_fresh_score: no run config, no environment."""
    data_root = tmp_path / "data"
    shutil.copytree(coyo_run["data_root"], data_root)
    clip = profile_for(coyo_run["world"], data_root).resources["clip"]
    strict = ClipScorer(**{**clip.model_dump(), "min_fresh_score": 1.5})  # cosines never reach it
    with dg.instance_for_test() as instance:
        res = run(defs_for(coyo_run["world"], data_root, clip=strict), instance, ["coyo_clip_scored"], ["00001"])
        assert res.success, failure_text(res)
        assert partition_metadata(instance, "coyo_clip_scored", "00001")["threshold"] == 1.5
    man = pl.read_parquet(CoyoLayout(data_root_at(str(data_root))).samples_manifest("00001"))
    scored = man.filter(pl.col("fresh_clip_sim").is_not_null())
    assert scored.height > 0 and not man["kept"].any()
    assert (scored["drop_reason"] == DROP_BELOW).all()


def test_every_step_publishes_what_the_next_fetches_on_a_remote_root(sample_world, tmp_path):
    """Each asset runs in its own empty working copy: it can only see what the one before published."""
    url = f"memory://coyo-{uuid.uuid4().hex}/vila"
    keys = ("00003", "00004")
    with dg.instance_for_test() as instance:
        for i, asset in enumerate([*SHARD_ASSETS, "coyo_split"]):
            root = FsspecDataRoot(url_root=url, local_cache=str(tmp_path / f"work{i}"))
            defs = build_definitions(sample_world.profile(root))  # the profile over this machine's own copy
            res = run(defs, instance, [asset], None if asset == "coyo_split" else keys)
            assert res.success, (asset, failure_text(res))
    remote = CoyoLayout(FsspecDataRoot(url_root=url, local_cache=str(tmp_path / "work0")))
    fs, base = fsspec.core.url_to_fs(url)
    published = {p.removeprefix(base.rstrip("/") + "/") for p in fs.find(base)}

    def rel(path: Path) -> str:
        return path.relative_to(tmp_path / "work0").as_posix()

    for key in keys:
        for path in (remote.source(key), remote.selection(key), remote.selection_summary(key), remote.samples(key),
                     remote.shard_pickle(key), remote.samples_manifest(key), remote.shard_summary(key),
                     remote.fresh_scores_png(key)):
            assert rel(path) in published
    assert rel(remote.split_manifest()) in published
    parts = {p for p in published if p.startswith(rel(remote.split_dir()) + "/")}
    assert parts and all(re.fullmatch(r".*/part-\d{5}\.(pkl|count)", p) for p in parts)
    assert not any("/_crawl/" in p for p in published)  # scratch stays local


def test_missing_or_malformed_shard_fails_with_a_clear_message(make_world, tmp_path):
    world = make_world(families=["coyo"], clip=False)
    repo = world.hub_root / "datasets" / coyo.REPO_ID
    (repo / coyo.shard_filename("00005")).unlink()
    bad = repo / coyo.shard_filename("00006")
    pl.read_parquet(bad).drop("clip_similarity_vitl14").with_columns(pl.col("width").cast(pl.String)).write_parquet(bad)
    defs = defs_for(world, tmp_path / "data")
    with dg.instance_for_test() as instance:
        missing = run(defs, instance, ["coyo_metadata_shard"], ["00005"])
        assert not missing.success
        text = failure_text(missing)
        assert "COYO shard 00005" in text and "no file 'data/part-00005-" in text
        malformed = run(defs, instance, ["coyo_metadata_shard"], ["00006"])
        assert not malformed.success
        text = failure_text(malformed)
        assert "data/part-00006-17da4908-939c-46e5-91d0-15f256041956-c000.snappy.parquet" in text
        assert "'clip_similarity_vitl14' is missing" in text and "'width' has type" in text
