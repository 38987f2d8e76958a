"""The vila policy against an independent transcription of VILA's COYO scripts.

``coyo_downloader.py SHARD`` and ``coyo_splitter.py`` are written out below in plain Python and numpy, line
by line from the reference (pandas is replaced by the numpy operations it performs: a float32 column plus a
float32 column is a float32 sum; ``> 0.6`` compares a float32 array with a Python float, in float32). The
two points VILA leaves undefined are pinned as the vila policy pins them: the order among equal scores is
file order (a stable descending sort), and the download-completion order of the records is the selection
order. Crawl results are whatever the crawler fetched; both sides are given the same ones.
"""

from __future__ import annotations

import base64
import os
import pickle
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.dagster_runs import check_results, defs_for, failure_text, materializations, op_config, run
from vila_assets.assets.coyo.layout import CoyoLayout
from vila_assets.core import coyo
from vila_assets.core.coyo_rescore import RescoreConfig, rescore_shard
from vila_assets.core.coyo_split import ShardOutput, kept_counts, plan_split, split_shards
from vila_assets.core.crawl.writer import SAMPLES_SCHEMA, write_table
from vila_assets.profiles import data_root_at
from vila_assets.resources.policy import DataPolicy
from vila_assets.sample_world.images import encode, render_photo
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import coyo as coyo_world

# --- VILA's scripts, transcribed ---------------------------------------------------------------------------


def vila_downloader_selection(input_dir: Path, shard: int) -> tuple[list[dict], bool]:
    """coyo_downloader.py's metadata part: (the rows it would download, in order; whether its assert holds)."""
    names = sorted(f for f in os.listdir(input_dir) if f.endswith(".parquet"))
    df = pq.read_table(input_dir / names[shard]).to_pydict()
    n = len(df["id"])
    b32 = np.array(df["clip_similarity_vitb32"], dtype=np.float32)  # nulls arrive as NaN, as in pandas
    l14 = np.array(df["clip_similarity_vitl14"], dtype=np.float32)
    clip_sim = b32 + l14
    kept = [i for i in range(n) if clip_sim[i] > 0.6]
    assert_holds = len(kept) / n > 0.2
    kept = sorted(kept, key=lambda i: -clip_sim[i])  # sort_values(ascending=False), stable
    kept = kept[: int(n * 0.2)]
    return [{"id": df["id"][i], "url": df["url"][i], "text": df["text"][i], "clip_sim": float(clip_sim[i])}
            for i in kept], assert_holds


def vila_downloader_output(selection: list[dict], fetched: dict[int, bytes | None]) -> list[dict]:
    """coyo_downloader.py's output: every selected row whose image was fetched, with the JPEG as base64 str.
    ``fetched`` maps a selection position to the crawler's bytes (None: the download failed)."""
    out = []
    for i, row in enumerate(selection):
        if fetched.get(i):
            out.append({**row, "image": base64.b64encode(fetched[i]).decode()})
    return out


def vila_splitter(pkl_dir: Path, out_dir: Path, per: int) -> None:
    """coyo_splitter.py: concatenate the sorted shard pickles, write consecutive parts of exactly ``per``;
    the final partial part is dropped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer, counter = [], 0
    for name in sorted(f for f in os.listdir(pkl_dir) if f.endswith(".pkl")):
        with open(pkl_dir / name, "rb") as fh:
            buffer += pickle.load(fh)
        while len(buffer) >= per:
            chunk, buffer = buffer[:per], buffer[per:]
            with open(out_dir / f"part-{counter:05d}.pkl", "wb") as fh:
                pickle.dump(chunk, fh)
            with open(out_dir / f"part-{counter:05d}.count", "w") as fh:
                fh.write(str(len(chunk)))
            counter += 1


# --- comparing ------------------------------------------------------------------------------------------


def _selection_records(path: Path) -> list[dict]:
    return [{"id": r["id"], "url": r["url"], "text": r["caption"], "clip_sim": r["clip_sim"]}
            for r in pq.read_table(path).to_pylist()]


def _same_split(ours: Path, theirs: Path) -> None:
    """Same file names; each part the same records in the same order; the .count files byte for byte.
    (Pickle bytes differ by design: VILA dumps with the default protocol, we stream protocol 3.)"""
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs))
    for name in sorted(os.listdir(theirs)):
        if name.endswith(".count"):
            assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
        else:
            with open(ours / name, "rb") as a, open(theirs / name, "rb") as b:
                assert pickle.load(a) == pickle.load(b), name


@pytest.fixture(scope="module")
def coyo_repo(tmp_path_factory) -> Path:
    hub = tmp_path_factory.mktemp("coyo-equivalence")
    coyo_world.build(SourceContext(hub, "http://127.0.0.1:9", seed=0, scale="test"))
    return hub / "datasets" / coyo.REPO_ID


# --- core -----------------------------------------------------------------------------------------------


def test_vila_selection_equals_the_downloader_on_every_sample_world_shard(coyo_repo, tmp_path):
    """All 128 shards, the tie at the cut, the repeated ids and the shard VILA's assert stops included."""
    files = sorted(p.relative_to(coyo_repo).as_posix() for p in coyo_repo.rglob("*") if p.is_file())
    stopped = []
    for key in coyo.SHARD_KEYS:
        expected, assert_holds = vila_downloader_selection(coyo_repo / "data", int(key))
        shard = coyo_repo / coyo.resolve_shard_file(files, key, "sample world")
        out = tmp_path / f"{key}.parquet"
        summary = coyo.select_top(shard, out, coyo.SelectionConfig(policy="vila"))
        assert _selection_records(out) == expected, key
        assert summary.vila_assert_fails == (not assert_holds), key
        if not assert_holds:
            stopped.append(key)
    assert stopped == [coyo_world.SHORTFALL_SHARD]  # VILA stops it; we select what passes and report it


def _fake_fetch(selection: Path, samples: Path, fail_every: int) -> dict[int, bytes | None]:
    """A crawl result for a selection: every ``fail_every``-th row fails; the rest get a small JPEG."""
    rows, fetched = [], {}
    for i, r in enumerate(pq.read_table(selection).to_pylist()):
        img = None if i % fail_every == fail_every - 1 else encode(render_photo("red", "circle", 1_000_000 + i, 64, 48))
        fetched[i] = img
        rows.append({"key": r["key"], "url": r["url"], "caption": r["caption"],
                     "status": "ok" if img else "failed_download", "attempts": 1, "image": img})
    write_table(samples, rows, SAMPLES_SCHEMA)
    return fetched


def test_vila_shard_pickles_and_split_equal_the_downloader_and_splitter(coyo_repo, tmp_path):
    keys = ("00000", "00001", "00002", "00003", "00004")
    theirs_pkl, ours, outputs = tmp_path / "vila-pkl", tmp_path / "ours", []
    theirs_pkl.mkdir()
    for key in keys:
        sel, samples = tmp_path / f"sel-{key}.parquet", tmp_path / f"samples-{key}.parquet"
        coyo.select_top(coyo_repo / coyo.shard_filename(key), sel, coyo.SelectionConfig(policy="vila"))
        fetched = _fake_fetch(sel, samples, fail_every=4)
        manifest, pkl = tmp_path / f"manifest-{key}.parquet", tmp_path / f"{key}.pkl"
        rescore_shard(sel, samples, None, RescoreConfig(None), manifest, pkl)
        expected = vila_downloader_output(vila_downloader_selection(coyo_repo / "data", int(key))[0], fetched)
        with open(pkl, "rb") as fh:
            assert pickle.load(fh) == expected, key
        with open(theirs_pkl / f"{int(key):04d}.pkl", "wb") as fh:  # the downloader's output name
            pickle.dump(expected, fh)
        outputs.append(ShardOutput(key, manifest, samples))
    vila_splitter(theirs_pkl, tmp_path / "theirs", per=7)
    n = sum(kept_counts(outputs).values())
    summary = split_shards(outputs, ours, plan_split("vila", n, 7, world_size=4))
    assert summary.plan.dropped == n % 7 > 0
    _same_split(ours, tmp_path / "theirs")


# --- assets ---------------------------------------------------------------------------------------------

RANGE = ("00000", "00001", "00002", "00003")
VILA = DataPolicy(policy="vila", train_world_size=4)


@pytest.fixture(scope="module")
def vila_run(tmp_path_factory):
    """The five COYO assets under the vila policy on a COYO-only sample world, with the real crawler."""
    from vila_assets.sample_world.world import SampleWorld

    base = tmp_path_factory.mktemp("coyo-vila")
    with SampleWorld(base / "world", scale="test", clip=False, families=["coyo"]) as world:
        data_root = base / "data"
        defs = defs_for(world, data_root, data_policy=VILA)
        with dg.instance_for_test() as instance:
            shards = run(defs, instance, ["coyo_metadata_shard", "coyo_selection", "coyo_images",
                                          "coyo_clip_scored"], RANGE)
            split = run(defs, instance, ["coyo_split"], run_config=op_config("coyo_split", samples_per_part=8))
            yield {"world": world, "layout": CoyoLayout(data_root_at(str(data_root))), "shards": shards,
                   "split": split, "base": base}


def _fetched_by_position(samples: Path) -> dict[int, bytes | None]:
    return {i: (r["image"] if r["status"] == "ok" else None)
            for i, r in enumerate(pq.read_table(samples, columns=["status", "image"]).to_pylist())}


def test_vila_policy_assets_equal_vilas_scripts_on_the_sample_world(vila_run):
    assert vila_run["shards"].success, failure_text(vila_run["shards"])
    assert vila_run["split"].success, failure_text(vila_run["split"])
    layout, repo = vila_run["layout"], vila_run["world"].hub_root / "datasets" / coyo.REPO_ID
    theirs_pkl = vila_run["base"] / "vila-pkl"
    theirs_pkl.mkdir()
    for key in RANGE:
        selection, _ = vila_downloader_selection(repo / "data", int(key))
        assert _selection_records(layout.selection(key)) == selection, key
        expected = vila_downloader_output(selection, _fetched_by_position(layout.samples(key)))
        with open(layout.shard_pickle(key), "rb") as fh:
            assert pickle.load(fh) == expected, key
        with open(theirs_pkl / f"{int(key):04d}.pkl", "wb") as fh:
            pickle.dump(expected, fh)
    vila_splitter(theirs_pkl, vila_run["base"] / "vila-split", per=8)
    _same_split(layout.split_dir(), vila_run["base"] / "vila-split")


def test_vila_policy_reports_what_vila_loses_instead_of_failing(vila_run):
    checks = check_results(vila_run["shards"])
    gate = checks["coyo_selection:enough_rows_pass_gate"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN and "00002: " in gate.description
    ids = checks["coyo_selection:ids_unique"]
    assert not ids.passed and "00001: 2 row(s) repeat an id" in ids.description and "0 left out" in ids.description
    assert checks["coyo_selection:selection_correct"].passed
    scored = materializations(vila_run["shards"])["coyo_clip_scored"]
    assert scored["policy"] == "vila" and scored["scorer"].startswith("none")
    split = materializations(vila_run["split"])["coyo_split"]
    assert split["policy"] == "vila" and split["dropped"] == split["records"] % 8
    assert split["samples"] == split["records"] - split["dropped"] and split["padded"] == 0
    world = check_results(vila_run["split"])["coyo_split:train_world_size"]
    assert world.metadata["world_size"].value == 4
    assert world.metadata["total"].value == split["samples"]
    assert world.passed == (world.metadata["lost"].value == 0)
