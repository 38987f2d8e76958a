"""COYO core logic, called directly: schema, selection, re-score bookkeeping, streamed pickle, split."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vila_assets.core import coyo
from vila_assets.core.coyo_rescore import (
    DROP_BELOW,
    DROP_BEYOND_TARGET,
    RescoreConfig,
    duplicate_rates,
    rescore_shard,
    spearman,
)
from vila_assets.core.coyo_split import ShardOutput, check_split_dir, kept_counts, plan_split, split_shards
from vila_assets.core.train_layout import usable_records
from vila_assets.core.crawl.writer import SAMPLES_SCHEMA, write_table
from vila_assets.core.vila_format import decode_base64_image, loader_shards, write_pickled_list
from vila_assets.sample_world.generators import write_synthetic_shard
from vila_assets.sample_world.images import encode, render_photo
from vila_assets.sample_world.sources import SourceContext
from vila_assets.sample_world.sources import coyo as coyo_source


@pytest.fixture(scope="module")
def sample_shards(tmp_path_factory) -> Path:
    """The sample world's COYO repo (no servers needed to build it)."""
    hub = tmp_path_factory.mktemp("coyo-hub")
    coyo_source.build(SourceContext(hub, "http://127.0.0.1:9", seed=0, scale="test"))
    return hub / "datasets" / coyo.REPO_ID


def _naive_top(path: Path, fraction=0.2, gate=0.6) -> list[int]:
    """The rule spelled out eagerly, for comparison (stable order: score desc, id asc)."""
    df = pl.read_parquet(path)
    n = df.height
    s = pl.col("clip_similarity_vitb32").cast(pl.Float64) + pl.col("clip_similarity_vitl14").cast(pl.Float64)
    df = df.with_columns(s.alias("s")).filter(pl.col("s").is_not_nan() & (pl.col("s") > gate))
    return df.sort(["s", "id"], descending=[True, False]).head(int(n * fraction))["id"].to_list()


# --- schema -----------------------------------------------------------------------------------------------


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_shards_are_picked_as_vila_picks_them_and_success_is_ignored(sample_shards):
    files = _listing(sample_shards)
    assert "data/_SUCCESS" in files
    # VILA: sorted(f for f in os.listdir(data) if f.endswith(".parquet"))[SHARD]
    vila = sorted(f for f in (p.rsplit("/", 1)[1] for p in files if p.startswith("data/")) if f.endswith(".parquet"))
    for key in coyo.SHARD_KEYS:
        assert coyo.resolve_shard_file(files, key, "repo") == "data/" + vila[int(key)] == coyo.shard_filename(key)
    for key in ("00000", "00127"):
        assert coyo.validate_shard_schema(sample_shards / coyo.shard_filename(key)).extra_columns == []


def test_the_hubs_parquet_branch_layout_is_accepted_too():
    converted = [".gitattributes", *(f"kakaobrain--coyo-700m/train/{i:04d}.parquet" for i in range(128))]
    assert coyo.resolve_shard_file(converted, "00007", "x") == "kakaobrain--coyo-700m/train/0007.parquet"
    legacy = [f"default/train/parquet-train-{i:05d}-of-00128.parquet" for i in range(128)]
    assert coyo.resolve_shard_file(legacy, "00127", "x") == "default/train/parquet-train-00127-of-00128.parquet"
    unnumbered = ["shards/a.parquet", "shards/b.parquet"]  # no numbers in the names: VILA's sorted position
    assert coyo.resolve_shard_file(unnumbered, "00001", "x") == "shards/b.parquet"


def test_a_missing_shard_file_is_named_instead_of_shifting_vilas_index(sample_shards):
    files = [f for f in _listing(sample_shards) if f != coyo.shard_filename("00005")]
    with pytest.raises(coyo.ShardNotFound, match=r"src: COYO shard 00005: no file 'data/part-00005-17da4908"):
        coyo.resolve_shard_file(files, "00005", "src")
    assert coyo.resolve_shard_file(files, "00006", "src") == coyo.shard_filename("00006")
    with pytest.raises(coyo.ShardNotFound, match="several folders"):
        coyo.resolve_shard_file(["a/part-00000-x.parquet", "b/part-00000-x.parquet"], "00000", "src")


def test_shard_with_missing_column_fails_naming_file_and_column(tmp_path, sample_shards):
    table = pq.read_table(sample_shards / coyo.shard_filename("00000")).drop_columns(["clip_similarity_vitl14"])
    bad = tmp_path / "part-bad.parquet"
    pq.write_table(table, bad)
    with pytest.raises(coyo.CoyoSchemaError) as err:
        coyo.validate_shard_schema(bad, name="data/part-00000-x.parquet")
    assert "data/part-00000-x.parquet" in str(err.value)
    assert "'clip_similarity_vitl14' is missing" in str(err.value)


def test_shard_with_wrong_types_fails_naming_every_bad_column(tmp_path, sample_shards):
    table = pq.read_table(sample_shards / coyo.shard_filename("00000"))
    table = table.set_column(0, "id", table.column("id").cast(pa.string()))
    i = table.schema.get_field_index("clip_similarity_vitb32")
    table = table.set_column(i, "clip_similarity_vitb32", table.column(i).cast(pa.string()))
    bad = tmp_path / "typed.parquet"
    pq.write_table(table, bad)
    with pytest.raises(coyo.CoyoSchemaError) as err:
        coyo.validate_shard_schema(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert "'id' has type string, expected integer" in msg
    assert "'clip_similarity_vitb32' has type string, expected float" in msg


def test_non_parquet_shard_fails_clearly(tmp_path):
    bad = tmp_path / "html.parquet"
    bad.write_text("<html>rate limited</html>")
    with pytest.raises(coyo.CoyoSchemaError, match="html.parquet: not a readable parquet file"):
        coyo.validate_shard_schema(bad)


@pytest.mark.parametrize("policy", ["vila", "curated"])
def test_a_truncated_shard_names_the_file_in_every_step(tmp_path, sample_shards, policy):
    """pyarrow's own message ("Parquet magic bytes not found") names no file; ours always does."""
    cut = tmp_path / "part-00000-cut.snappy.parquet"
    cut.write_bytes((sample_shards / coyo.shard_filename("00000")).read_bytes()[:40])
    with pytest.raises(coyo.CoyoSchemaError, match=r"src/data/part-00000-cut.snappy.parquet: not a readable parquet"):
        coyo.validate_shard_schema(cut, name="src/data/part-00000-cut.snappy.parquet")
    with pytest.raises(coyo.CoyoSchemaError, match=r"part-00000-cut.snappy.parquet: not a readable parquet"):
        coyo.select_top(cut, tmp_path / "sel.parquet", coyo.SelectionConfig(policy=policy))
    assert not (tmp_path / "sel.parquet").exists()


# --- selection --------------------------------------------------------------------------------------------


def test_selection_is_vila_rule_with_stable_id_tiebreak_and_identical_across_reruns(tmp_path, sample_shards):
    shard = sample_shards / coyo.shard_filename("00000")
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    s1 = coyo.select_top(shard, a)
    coyo.select_top(shard, b)
    assert a.read_bytes() == b.read_bytes()  # a rerun gives the same bytes
    coyo.select_top(shard, c, coyo.SelectionConfig(bucket_rows=7))  # other bucketing: same rows, same order
    assert pq.read_table(c).equals(pq.read_table(a))
    assert s1.selected == s1.target == int(0.2 * s1.rows) == 40
    sel = pl.read_parquet(a)
    assert sel["id"].to_list() == _naive_top(shard)
    assert sel["rank"].to_list() == list(range(40))
    assert coyo.verify_selection(shard, a, s1) == []
    # The sample world plants four rows with one score straddling the cut: the two smallest ids win.
    assert s1.ties_at_cut == 4 and s1.ties_kept == 2
    full = pl.read_parquet(shard).with_columns(
        s=pl.col("clip_similarity_vitb32").cast(pl.Float64) + pl.col("clip_similarity_vitl14").cast(pl.Float64)
    )
    tied = sorted(full.filter(pl.col("s") == s1.cut)["id"].to_list())
    assert sel.filter(pl.col("clip_sim") == s1.cut)["id"].to_list() == tied[:2]
    # NaN scores are counted, never ranked (NaN would sort above every number).
    assert s1.invalid == {"missing clip score": 1}
    assert s1.repeated_id_rows == 0 and s1.policy == "curated"


def test_selection_shortfall_is_reported_instead_of_crashing(tmp_path, sample_shards):
    shard = sample_shards / coyo.shard_filename(coyo_source.SHORTFALL_SHARD)
    s = coyo.select_top(shard, tmp_path / "sel.parquet", name="part-00002")
    assert s.passing < s.target
    assert s.selected == s.passing and s.shortfall == s.target - s.passing > 0
    assert s.vila_assert_fails
    assert any("part-00002: only" in w and "pass clip_sim > 0.6" in w and "would stop this shard" in w
               for w in s.warnings)
    assert coyo.verify_selection(shard, tmp_path / "sel.parquet", s) == []


def test_oversample_preselects_more_rows_in_the_same_order(tmp_path, sample_shards):
    shard = sample_shards / coyo.shard_filename("00000")
    base = coyo.select_top(shard, tmp_path / "base.parquet")
    more = coyo.select_top(shard, tmp_path / "more.parquet", coyo.SelectionConfig(oversample=1.25))
    assert more.target == base.target and more.wanted == 50 == more.selected
    ids = pl.read_parquet(tmp_path / "more.parquet")["id"].to_list()
    assert ids[: base.selected] == pl.read_parquet(tmp_path / "base.parquet")["id"].to_list()


def test_bounded_memory_selection_on_a_larger_synthetic_shard(tmp_path):
    shard = write_synthetic_shard(tmp_path / "syn.parquet", 60_000, seed=3, chunk_rows=20_000)
    out = tmp_path / "sel.parquet"
    s = coyo.select_top(shard, out, coyo.SelectionConfig(bucket_rows=2_500))
    assert s.selected == 12_000
    # Full rows are only ever held one rank bucket at a time; the rest of the work is (id, score) pairs.
    assert s.max_rows_held == 2_500
    assert s.passes == 3  # census, candidates above the floor, selected rows into their rank buckets
    assert s.ties_at_cut > 1  # 3-decimal scores: the cut really is a tie
    assert pl.read_parquet(out)["id"].to_list() == _naive_top(shard)
    assert coyo.verify_selection(shard, out, s) == []


def test_verify_selection_catches_a_wrong_selection(tmp_path, sample_shards):
    shard = sample_shards / coyo.shard_filename("00000")
    out = tmp_path / "sel.parquet"
    s = coyo.select_top(shard, out)
    table = pq.read_table(out)
    pq.write_table(table.slice(1).append_column("x", pa.array([0] * 39)).drop_columns(["x"]), out)  # best row lost
    problems = coyo.verify_selection(shard, out, s)
    assert any("ranks are not 0..m-1" in p for p in problems)
    assert any("rank at or above the cut" in p for p in problems)


def _planted_repeats(sample_shards) -> tuple[Path, list[int]]:
    """Shard 00001 and the ids the sample world repeats in it."""
    shard = sample_shards / coyo.shard_filename(coyo_source.REPEATED_IDS_SHARD)
    ids = pq.read_table(shard, columns=["id"]).column("id").to_pylist()
    return shard, sorted({i for i in ids if ids.count(i) > 1})


def test_repeated_ids_are_kept_under_vila_and_deduped_under_curated_never_a_failure(tmp_path, sample_shards):
    shard, repeated = _planted_repeats(sample_shards)
    assert len(repeated) == 2
    vila = coyo.select_top(shard, tmp_path / "v.parquet", coyo.SelectionConfig(policy="vila"), name="s1")
    cur = coyo.select_top(shard, tmp_path / "c.parquet", coyo.SelectionConfig(policy="curated"), name="s1")
    v_ids = pq.read_table(tmp_path / "v.parquet").column("id").to_pylist()
    c_ids = pq.read_table(tmp_path / "c.parquet").column("id").to_pylist()
    assert vila.repeated_id_rows == cur.repeated_id_rows == 2 and sorted(vila.repeated_ids) == repeated
    assert all(v_ids.count(i) == 2 for i in repeated) and vila.repeats_dropped == 0
    assert len(set(c_ids)) == len(c_ids) == cur.selected == cur.target and cur.repeats_dropped == 2
    assert set(repeated) <= set(c_ids)
    assert any("s1: 2 row(s) above the gate repeat an id" in w and "kept (vila)" in w for w in vila.warnings)
    assert any("2 repeat(s) left out (curated)" in w for w in cur.warnings)
    for summary, path in ((vila, "v.parquet"), (cur, "c.parquet")):
        assert coyo.verify_selection(shard, tmp_path / path, summary) == []


def test_vila_sums_in_float32_and_gates_in_float32_and_keeps_file_order_on_ties(tmp_path):
    """A row whose float32 sum is exactly fl32(0.6) fails VILA's gate (float64 arithmetic would pass it);
    equal scores keep file order under vila, id order under curated; out-of-range scores rank under vila."""
    b = np.float32(0.25)
    at_gate = np.float32(np.float32(0.6) - b)
    assert b + at_gate == np.float32(0.6) and float(b) + float(at_gate) > 0.6
    rows = [(9, 0.25, float(at_gate)), (5, 0.35, 0.35), (7, 0.35, 0.35), (3, 0.35, 0.35), (1, 1.5, 0.0),
            *((100 + i, 0.1, 0.1) for i in range(5))]
    table = pa.table({"id": [r[0] for r in rows], "clip_similarity_vitb32": [r[1] for r in rows],
                      "clip_similarity_vitl14": [r[2] for r in rows], "url": ["u"] * 10, "text": ["t"] * 10},
                     schema=pa.schema([("id", pa.int64()), ("clip_similarity_vitb32", pa.float32()),
                                       ("clip_similarity_vitl14", pa.float32()), ("url", pa.string()),
                                       ("text", pa.string())]))
    pq.write_table(table, tmp_path / "s.parquet")
    vila = coyo.select_top(tmp_path / "s.parquet", tmp_path / "v.parquet",
                           coyo.SelectionConfig(policy="vila", fraction=0.4))
    cur = coyo.select_top(tmp_path / "s.parquet", tmp_path / "c.parquet", coyo.SelectionConfig(fraction=0.4))
    assert pq.read_table(tmp_path / "v.parquet").column("id").to_pylist() == [1, 5, 7, 3]
    # curated: ties by id, 1 not ranked (out of range), 9 passes in float64 (0.6000000238 > 0.6)
    assert pq.read_table(tmp_path / "c.parquet").column("id").to_pylist() == [3, 5, 7, 9]
    assert vila.passing == 4 and vila.out_of_range_ranked == 1
    assert cur.passing == 4 and cur.invalid == {"clip score out of [-1, 1]": 1}
    clip = pq.read_table(tmp_path / "v.parquet").column("clip_sim").to_pylist()
    assert clip[1] == float(np.float32(0.35) + np.float32(0.35)) != 0.7  # the float32 sum, as a Python float


def test_oversample_is_refused_under_vila():
    with pytest.raises(ValueError, match="vila policy does not run"):
        coyo.SelectionConfig(policy="vila", oversample=1.25)


# --- re-score bookkeeping ---------------------------------------------------------------------------------


def _fake_crawl(selection: Path, samples: Path, statuses: list[str]) -> list[bytes | None]:
    sel = pq.read_table(selection).to_pylist()
    images = []
    rows = []
    for i, (r, st) in enumerate(zip(sel, statuses, strict=True)):
        img = encode(render_photo("red", "circle", 1_000_000 + i, 96, 72)) if st == "ok" else None
        images.append(img)
        rows.append({"key": r["key"], "url": r["url"], "caption": r["caption"], "status": st,
                     "error": None if st == "ok" else "404", "http_status": 200 if st == "ok" else 404,
                     "attempts": 1, "width": 96 if img else None, "height": 72 if img else None,
                     "orig_width": None, "orig_height": None, "sha256": f"{i:064x}" if img else None,
                     "phash": f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" if img else None, "image": img})
    write_table(samples, rows, SAMPLES_SCHEMA)
    return images


def test_rescore_drops_below_threshold_and_reranks_an_oversample(tmp_path, sample_shards):
    shard = sample_shards / coyo.shard_filename("00000")
    sel = tmp_path / "sel.parquet"
    s = coyo.select_top(shard, sel, coyo.SelectionConfig(oversample=1.25))
    statuses = ["ok"] * s.selected
    statuses[3] = "failed_download"
    _fake_crawl(sel, tmp_path / "crawled.parquet", statuses)
    # A scorer that likes odd ranks and dislikes every fifth pair.
    calls = []

    def score(images, texts):
        calls.append(len(images))
        return np.array([0.2 if "circle" in t else 0.9 for t in texts], dtype=np.float32)

    summary = rescore_shard(sel, tmp_path / "crawled.parquet", score,
                            RescoreConfig(min_fresh_score=0.5, target=s.target, vila_target=s.target, batch_rows=16),
                            tmp_path / "manifest.parquet", tmp_path / "shard.pkl")
    man = pl.read_parquet(tmp_path / "manifest.parquet")
    assert man.height == s.selected and man["rank"].to_list() == list(range(s.selected))
    circles = man.filter(pl.col("text").str.contains("circle") & (pl.col("crawl_status") == "ok"))
    assert (circles["drop_reason"] == DROP_BELOW).all()
    assert man.row(3, named=True)["drop_reason"] == "crawl: failed_download"
    passing = man.filter(pl.col("fresh_clip_sim") >= 0.5).height
    assert summary.kept == min(passing, s.target)
    assert (man["drop_reason"] == DROP_BEYOND_TARGET).sum() == max(0, passing - s.target)
    assert sum(calls) == s.selected - 1 and max(calls) <= 16
    with open(tmp_path / "shard.pkl", "rb") as fh:
        records = pickle.load(fh)
    kept = man.filter(pl.col("kept"))
    assert [r["id"] for r in records] == kept["id"].to_list()  # rank order
    assert set(records[0]) == {"id", "url", "text", "clip_sim", "image"}
    assert decode_base64_image(records[0]["image"]).mode == "RGB"
    # Written by vila_format's one pickle writer: the same records give the same bytes.
    write_pickled_list(tmp_path / "again.pkl", records)
    assert (tmp_path / "again.pkl").read_bytes() == (tmp_path / "shard.pkl").read_bytes()


def test_vila_keeps_every_downloaded_pair_without_scoring(tmp_path, sample_shards):
    shard = sample_shards / coyo.shard_filename("00000")
    sel = tmp_path / "sel.parquet"
    s = coyo.select_top(shard, sel, coyo.SelectionConfig(policy="vila"))
    statuses = ["ok"] * s.selected
    statuses[2], statuses[5] = "failed_download", "blocked"
    _fake_crawl(sel, tmp_path / "crawled.parquet", statuses)
    summary = rescore_shard(sel, tmp_path / "crawled.parquet", None, RescoreConfig(min_fresh_score=None),
                            tmp_path / "manifest.parquet", tmp_path / "shard.pkl")
    assert summary.kept == s.selected - 2 and summary.scored == 0 and summary.threshold is None
    man = pl.read_parquet(tmp_path / "manifest.parquet")
    assert man.filter(~pl.col("kept"))["drop_reason"].to_list() == ["crawl: failed_download", "crawl: blocked"]
    with open(tmp_path / "shard.pkl", "rb") as fh:
        records = pickle.load(fh)
    selection = pq.read_table(sel).to_pylist()
    expected = [(r["id"], r["url"], r["caption"], r["clip_sim"]) for i, r in enumerate(selection) if i not in (2, 5)]
    assert [(r["id"], r["url"], r["text"], r["clip_sim"]) for r in records] == expected
    with pytest.raises(ValueError, match="a scorer and a threshold go together"):
        rescore_shard(sel, tmp_path / "crawled.parquet", lambda i, t: np.zeros(len(i)), RescoreConfig(None),
                      tmp_path / "m2.parquet")


def test_shard_pickle_is_vila_formats_streamed_protocol_3_list(tmp_path):
    """The per-shard pickle comes from vila_format's one writer: a plain list, loadable, deterministic."""
    recs = [{"id": i, "url": f"u{i}", "text": "t" * (i % 7), "clip_sim": i / 3, "image": "QUJD"} for i in range(2_345)]
    n = write_pickled_list(tmp_path / "a.pkl", iter(recs))  # 2,345 records: three APPENDS batches
    write_pickled_list(tmp_path / "b.pkl", iter(recs))
    assert n == len(recs)
    data = (tmp_path / "a.pkl").read_bytes()
    assert data[:2] == b"\x80\x03"  # protocol 3, no framing
    with open(tmp_path / "a.pkl", "rb") as fh:
        assert pickle.load(fh) == recs
    assert data == (tmp_path / "b.pkl").read_bytes()
    write_pickled_list(tmp_path / "empty.pkl", iter([]))
    with open(tmp_path / "empty.pkl", "rb") as fh:
        assert pickle.load(fh) == []


def test_duplicate_rates_exact_and_near():
    base = 0x0F0F_F0F0_1234_ABCD
    near = base ^ 0b1011  # 3 bits away
    far = base ^ 0xFFFF_0000_0000_0000
    exact, near_rate = duplicate_rates(
        ["a", "b", "a", "c", "d"], [f"{base:016x}", f"{near:016x}", f"{base:016x}", f"{far:016x}", None]
    )
    assert exact == pytest.approx(1 / 5)
    assert near_rate == pytest.approx(2 / 5)  # the near copy and the exact copy
    assert duplicate_rates([], []) == (0.0, 0.0)


def test_spearman():
    a = np.array([1, 2, 3, 4, 5.0])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.array([1, 1, 1, 1, 1.0])) is None
    assert spearman(a[:2], a[:2]) is None


# --- split ------------------------------------------------------------------------------------------------


def _shard_outputs(tmp_path: Path, sizes: dict[str, int]) -> list[ShardOutput]:
    """Tiny manifest + samples pairs, every row kept."""
    from vila_assets.core.coyo_rescore import MANIFEST_SCHEMA

    outs = []
    img = encode(render_photo("blue", "square", 1_000_001, 64, 48))
    for key, n in sizes.items():
        rows, samples = [], []
        for i in range(n):
            rid = int(key) * 1000 + i
            rows.append({"rank": i, "id": rid, "url": f"http://x/{rid}.jpg", "text": f"caption {rid}", "clip_sim": 0.7,
                         "clip_similarity_vitb32": 0.35, "crawl_status": "ok", "kept": i % 5 != 4})
            samples.append({"key": str(rid), "status": "ok", "attempts": 1, "image": img})
        man, smp = tmp_path / f"m{key}.parquet", tmp_path / f"s{key}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), man)
        write_table(smp, samples, SAMPLES_SCHEMA)
        outs.append(ShardOutput(key, man, smp))
    return outs


def _lazy_coyo_read(directory: Path) -> list[dict]:
    """What LazyCoyoDataset does: n_shards = len(listdir)//2, sorted .count names, counts index the pickles."""
    out = []
    for shard in loader_shards(directory):
        with open(shard.pkl, "rb") as fh:
            data = pickle.load(fh)
        for i in range(shard.count):
            rec = data[i]
            text = rec.get("text", rec.get("caption"))
            image = decode_base64_image(rec["image"])
            out.append({"id": rec["id"], "text": text, "size": image.size, "mode": image.mode})
    return out


def _split(shards, out, policy, samples_per_part, world_size=1, manifest=None):
    plan = plan_split(policy, sum(kept_counts(shards).values()), samples_per_part, world_size)
    return split_shards(shards, out, plan, manifest)


def _names(n_parts: int) -> list[str]:
    return sorted(f"part-{i:05d}.{e}" for i in range(n_parts) for e in ("pkl", "count"))


def test_vila_split_writes_exact_parts_drops_and_lists_the_remainder_and_removes_stale_parts(tmp_path):
    shards = _shard_outputs(tmp_path, {"00000": 23, "00001": 17, "00003": 9})  # every 5th dropped: 19 + 14 + 8 = 41
    out = tmp_path / "pkl02-split"
    out.mkdir()
    for stale in ("part-00009.pkl", "part-00009.count", ".part-00002.pkl.tmp-abc"):
        (out / stale).write_text("0")
    s = _split(shards, out, "vila", 5, manifest=tmp_path / "split.parquet")
    assert s.plan.records == 41 and s.part_sizes == [5] * 8 and s.plan.dropped == 1 and s.total == 40
    assert s.records_per_shard == {"00000": 19, "00001": 14, "00003": 8}
    assert sorted(s.removed_stale) == [".part-00002.pkl.tmp-abc", "part-00009.count", "part-00009.pkl"]
    assert sorted(p.name for p in out.iterdir()) == _names(8)
    read = _lazy_coyo_read(out)
    manifest = pl.read_parquet(tmp_path / "split.parquet")
    assert [r["id"] for r in read] == manifest.filter(pl.col("part").is_not_null())["id"].to_list()
    lost = manifest.filter(pl.col("part").is_null())
    assert lost["id"].to_list() == [3008] and lost["shard"].to_list() == ["00003"]  # the last kept record
    assert [r["id"] for r in read][:3] == [0, 1, 2] and all(r["mode"] == "RGB" for r in read)
    assert check_split_dir(out, 5, decode_per_part=None).problems == []
    # Shard order, then rank; a rerun gives the same bytes; a rerun with bigger parts leaves no stale part.
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    _split(shards, out, "vila", 5)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    s2 = _split(shards, out, "vila", 16)
    assert s2.part_sizes == [16, 16] and s2.plan.dropped == 9
    assert sorted(p.name for p in out.iterdir()) == _names(2)


def test_curated_split_loses_no_record_at_the_world_size_and_counts_its_repeats(tmp_path):
    shards = _shard_outputs(tmp_path, {"00000": 23, "00001": 17, "00003": 9})  # 41 kept
    out = tmp_path / "pkl02-split"
    s = _split(shards, out, "curated", 5, world_size=2, manifest=tmp_path / "split.parquet")
    # 41 records -> 48 (whole indices of 4 on each of 2 ranks), in parts of at most 5: 10 parts, 5 per rank
    assert s.parts % 2 == 0 and max(s.part_sizes) <= 5 and s.total == 48 and s.plan.padded == 7
    usable = usable_records(s.part_sizes, 2, 4)
    assert usable.usable == usable.total == 48
    read = [r["id"] for r in _lazy_coyo_read(out)]
    manifest = pl.read_parquet(tmp_path / "split.parquet")
    assert read == manifest["id"].to_list() and manifest["part"].null_count() == 0
    originals = manifest.filter(~pl.col("repeat"))["id"].to_list()
    assert len(originals) == len(set(originals)) == 41  # every kept record once ...
    assert manifest.filter(pl.col("repeat"))["id"].to_list() == originals[:7]  # ... then the first ones again
    assert check_split_dir(out, 5, decode_per_part=None, exact=False).problems == []
    assert any("every part must hold 5" in p for p in check_split_dir(out, 5, exact=True).problems)


def test_curated_plan_at_production_sizes():
    plan = plan_split("curated", 1_000_003, 12_440, 128)
    assert len(plan.sizes) % 128 == 0 and max(plan.sizes) <= 12_440
    assert plan.total == 1_000_448 and plan.padded == 445  # whole indices of 4 on each of 128 ranks
    assert usable_records(list(plan.sizes), 128, 4).lost == 0
    vila = plan_split("vila", 1_000_003, 12_440, 128)
    assert vila.sizes == (12_440,) * 80 and vila.dropped == 4_803
    assert plan_split("curated", 0, 5, 4).sizes == ()


def test_split_contract_check_finds_problems_naming_file_and_record(tmp_path):
    shards = _shard_outputs(tmp_path, {"00000": 12})
    out = tmp_path / "split"
    _split(shards, out, "vila", 4)
    (out / "_SUCCESS").write_text("")
    assert any("not a .pkl/.count file" in p for p in check_split_dir(out, 4).problems)
    (out / "_SUCCESS").unlink()
    with open(out / "part-00001.pkl", "rb") as fh:
        data = pickle.load(fh)
    data[0]["image"] = "bm90IGFuIGltYWdl"
    data[1].pop("text")
    with open(out / "part-00001.pkl", "wb") as fh:
        pickle.dump(data, fh)
    problems = check_split_dir(out, 4, decode_per_part=None).problems
    assert any("part-00001.pkl record 0: image does not decode" in p for p in problems)
    assert any("part-00001.pkl record 1: no text/caption" in p for p in problems)
    assert any("every part must hold 5" in p for p in check_split_dir(out, 5).problems)
    (out / "part-00000.pkl").write_bytes(b"\x80\x03]q\x00(")  # a truncated pickle
    assert any(p.startswith(f"{out / 'part-00000.pkl'}: not a readable pickle") for p in check_split_dir(out, 4).problems)


def test_truncated_crawl_output_is_named(tmp_path):
    shards = _shard_outputs(tmp_path, {"00000": 3})
    shards[0].samples.write_bytes(shards[0].samples.read_bytes()[:40])
    with pytest.raises(coyo.CoyoFileError, match=rf"{shards[0].samples}: not a readable parquet file"):
        _split(shards, tmp_path / "out", "vila", 2)


def test_one_crawl_for_several_shards_is_cut_back_per_shard_in_order(tmp_path, sample_shards):
    sels = {}
    for key in ("00000", "00003", "00004"):
        sels[key] = tmp_path / f"sel-{key}.parquet"
        coyo.select_top(sample_shards / coyo.shard_filename(key), sels[key])
    counts = coyo.write_crawl_input(sels, tmp_path / "input.parquet")
    assert counts == {"00000": 40, "00003": 2, "00004": 2}
    rows = pq.read_table(tmp_path / "input.parquet").to_pylist()
    assert rows[40]["key"] == "00003/" + pq.read_table(sels["00003"]).column("key")[0].as_py()
    # What the crawler writes: one row per input row, in input order.
    write_table(tmp_path / "crawled.parquet", [
        {"key": r["key"], "url": r["url"], "caption": r["caption"], "status": "failed_download", "attempts": 1}
        for r in rows], SAMPLES_SCHEMA)
    outs = {k: tmp_path / f"samples-{k}.parquet" for k in sels}
    coyo.split_crawl_samples(tmp_path / "crawled.parquet", counts, outs, batch_rows=7)
    for key in sels:
        assert pq.read_table(outs[key]).column("key").to_pylist() == pq.read_table(sels[key]).column("key").to_pylist()
    with pytest.raises(ValueError, match="rows, but the shards' selections hold"):
        coyo.split_crawl_samples(tmp_path / "crawled.parquet", {**counts, "00005": 1}, outs)
