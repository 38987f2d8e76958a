"""MMC4-core logic without Dagster: shard naming and listing (any source), doc validation and unreadable
files, crawl rows (one download per URL of a doc), the data policies' merge rules, in-shard dedup, the
inspection that the VILA-contract checks are built on, and the published counts of the world-size check."""

import base64
import json
import pickle
import zipfile

import pytest

from vila_assets.core import vila_format as vf
from vila_assets.core.mmc4 import (
    CORE_MISSING_SHARDS,
    Mmc4FormatError,
    SourceSpec,
    core_shard_ids,
    crawl_rows,
    list_source,
    missing_indices,
    parse_shard,
    shards_from_listing,
    split_batch_samples,
    write_batch_crawl_input,
)
from vila_assets.core.mmc4_merge import MergeRules, inspect_shard, merge_shard, rules_for
from vila_assets.sample_world.images import encode, render_photo

ALL_OR_NOTHING = MergeRules(all_or_nothing=True, dedup=True)
PARTIAL = rules_for("curated")


def _jpeg(seed: int, color: str = "red", shape: str = "circle", size=(96, 72)) -> bytes:
    return encode(render_photo(color, shape, seed, *size), "JPEG", quality=80)


def _doc(n_images: int, texts=("One.", "Two.", "Three."), url_fmt="http://img.example/{i}.jpg") -> dict:
    return {
        "url": "http://example.com/page.html",
        "text_list": list(texts),
        "image_info": [
            {"raw_url": url_fmt.format(i=i), "image_name": f"{i:012x}.jpg", "face_detections": None,
             "matched_text_index": (i + 1) % len(texts), "matched_sim": 0.3}
            for i in range(n_images)
        ],
        "similarity_matrix": [[0.1 * (r + 1)] * len(texts) for r in range(n_images)],
        "could_have_url_duplicate": 0,
    }


def _annotations(docs: list[dict]) -> list[dict]:
    return [dict(line=n, status="valid", reason=None, where=f"s.jsonl:{n}", url=d["url"],
                 n_sentences=len(d["text_list"]), n_images=len(d["image_info"]), doc_json=json.dumps(d))
            for n, d in enumerate(docs, 1)]


def _sizes(img: bytes | None) -> dict:
    """A crawl result's output and source sizes (the source taken as already small)."""
    if img is None:
        return dict.fromkeys(("width", "height", "orig_width", "orig_height"))
    from PIL import Image
    import io

    w, h = Image.open(io.BytesIO(img)).size
    return {"width": w, "height": h, "orig_width": w, "orig_height": h}


def _samples(annotations: list[dict], outcome) -> dict:
    """Crawl results for every crawled image: ``outcome(line, i)`` -> (status, jpeg bytes or None)."""
    out = {}
    for r in crawl_rows(annotations):
        status, img = outcome(r["line"], r["image_index"])
        out[r["key"]] = {"url": r["url"], "status": status, "image": img, **_sizes(img)}
    return out


# --- shard ids, names, listing -------------------------------------------------------------------------


def test_core_shard_ids_are_23085_with_the_14_known_gaps():
    ids = core_shard_ids()
    assert len(ids) == 23_085 and ids[0] == 0 and ids[-1] == 23_098
    assert missing_indices(ids) == sorted(CORE_MISSING_SHARDS)


def test_listing_keys_shards_by_zero_padded_index_and_ignores_other_files():
    shards = shards_from_listing([
        "README.md", "docs_no_face_shard_10_v3.jsonl.zip", "docs_no_face_shard_2_v3.jsonl.zip",
        "docs_no_face_shard_2_v3.jsonl", "sub/docs_shard_0_v3.jsonl", ".gitattributes",
    ])
    assert list(shards) == ["00000", "00002", "00010"]  # numeric order == lexical order of the keys
    assert shards["00002"].path == "docs_no_face_shard_2_v3.jsonl"  # the plain file wins over the zip
    assert shards["00010"].stem == "docs_no_face_shard_10_v3" and shards["00010"].zipped
    assert shards["00000"].stem == "docs_shard_0_v3"


def test_directory_source_lists_and_reports_gaps(tmp_path):
    for i in (0, 1, 4):
        (tmp_path / f"docs_no_face_shard_{i}_v3.jsonl").write_text("")
    listing = list_source(SourceSpec(location=str(tmp_path)))
    assert list(listing.shards) == ["00000", "00001", "00004"]
    assert listing.missing == [2, 3]


def test_url_template_source_lists_the_known_core_ids():
    listing = list_source(SourceSpec(location="https://host/data/docs_shard_{index}_v3.jsonl.zip"))
    assert len(listing.shards) == 23_085
    assert listing.shards["03217"].path == "https://host/data/docs_shard_3217_v3.jsonl.zip"
    assert "03218" not in listing.shards


# --- validation ----------------------------------------------------------------------------------------


def _write_zip(path, member: str, text: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, text)


def test_malformed_docs_are_counted_invalid_with_file_and_line(tmp_path):
    good = _doc(2)
    no_text = {k: v for k, v in good.items() if k != "text_list"}
    bad_index = json.loads(json.dumps(good))
    bad_index["image_info"][1]["matched_text_index"] = 9
    short_sim = dict(good, similarity_matrix=good["similarity_matrix"][:1])
    lines = [json.dumps(good), '{"url": "x", "text_list": [', json.dumps(no_text), "", json.dumps(bad_index),
             json.dumps(short_sim), "[1, 2]"]
    path = tmp_path / "docs_no_face_shard_7_v3.jsonl.zip"
    _write_zip(path, "docs_no_face_shard_7_v3.jsonl", "\n".join(lines) + "\n")

    parsed = parse_shard(path)
    assert [r["line"] for r in parsed.valid] == [1]
    invalid = {r["line"]: (r["where"], r["reason"]) for r in parsed.invalid}
    where = "docs_no_face_shard_7_v3.jsonl.zip!docs_no_face_shard_7_v3.jsonl"
    assert invalid[2][0] == f"{where}:2" and invalid[2][1].startswith("bad JSON")
    assert invalid[3] == (f"{where}:3", "missing text_list")
    assert invalid[5] == (f"{where}:5", "image_info[1].matched_text_index 9 out of range for 3 sentences")
    assert invalid[6][1] == "similarity_matrix has 1 rows for 2 images"
    assert invalid[7][1] == "doc is a JSON list, not an object"
    assert 4 not in invalid  # a blank line is not a doc
    assert sum(parsed.invalid_reasons().values()) == 5


def test_strict_mode_raises_naming_file_and_line(tmp_path):
    path = tmp_path / "docs_no_face_shard_1_v3.jsonl"
    path.write_text(json.dumps(_doc(1)) + "\n" + json.dumps({"image_info": []}) + "\n")
    with pytest.raises(Mmc4FormatError, match=r"docs_no_face_shard_1_v3\.jsonl:2: missing text_list"):
        parse_shard(path, strict=True)


def test_zip_with_several_members_is_an_error(tmp_path):
    path = tmp_path / "docs_no_face_shard_1_v3.jsonl.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.jsonl", "")
        zf.writestr("b.jsonl", "")
    with pytest.raises(Mmc4FormatError, match="expected one .jsonl member"):
        parse_shard(path)


def test_crawl_rows_keep_extensionless_and_query_string_urls_verbatim():
    urls = ["https://cdn.x.com/img/123", "https://x.com/a.jpg?w=640&v=2", "https://x.com/b.png"]
    doc = _doc(3)
    for info, url in zip(doc["image_info"], urls):
        info["raw_url"] = url
    rows = crawl_rows(_annotations([doc]))
    assert [r["url"] for r in rows] == urls
    assert [r["key"] for r in rows] == ["1-0", "1-1", "1-2"]
    assert rows[0]["caption"] == doc["text_list"][doc["image_info"][0]["matched_text_index"]]


def test_batched_crawl_output_is_split_back_per_shard(tmp_path):
    from vila_assets.core.crawl.writer import SAMPLES_SCHEMA, write_table
    import pyarrow.parquet as pq

    rows = {"00001": crawl_rows(_annotations([_doc(2)])), "00002": [], "00003": crawl_rows(_annotations([_doc(1)]))}
    batch_input = write_batch_crawl_input(rows, tmp_path / "in.parquet")
    keys = pq.read_table(batch_input).column("key").to_pylist()
    assert keys == ["00001/1-0", "00001/1-1", "00003/1-0"]
    samples = [dict.fromkeys(SAMPLES_SCHEMA.names) | {"key": k, "url": "u", "status": "ok", "attempts": 1} for k in keys]
    write_table(tmp_path / "samples.parquet", samples, SAMPLES_SCHEMA)
    out = split_batch_samples(tmp_path / "samples.parquet", rows, lambda s: tmp_path / s / "samples.parquet")
    assert pq.read_table(out["00001"]).column("key").to_pylist() == ["1-0", "1-1"]
    assert pq.read_table(out["00002"]).num_rows == 0
    assert pq.read_table(out["00003"]).column("key").to_pylist() == ["1-0"]


# --- filter policies and dedup -------------------------------------------------------------------------


def test_all_or_nothing_keeps_only_docs_whose_images_all_survived():
    docs = [_doc(2), _doc(3), _doc(1)]
    ann = _annotations(docs)
    samples = _samples(ann, lambda line, i: ("failed_download", None) if (line, i) == (2, 1) else ("ok", _jpeg(line * 10 + i)))
    res = merge_shard(ann, samples, ALL_OR_NOTHING)
    assert [r["url"] for r in res.records] == [docs[0]["url"], docs[2]["url"]]
    assert [len(r["image_info"]) for r in res.records] == [2, 1]
    assert res.records[0]["similarity_matrix"] == docs[0]["similarity_matrix"]  # docs otherwise unchanged
    assert base64.b64decode(res.records[0]["image_info"][1]["image_base64"]) == _jpeg(11)
    assert [d["status"] for d in res.doc_rows] == ["kept", "dropped", "kept"]
    assert res.doc_rows[1]["reason"] == "images lost: 1 failed_download"
    assert (res.docs_kept, res.docs_in, round(res.doc_yield, 3)) == (2, 3, 0.667)


def test_partial_drops_failed_images_with_their_similarity_rows():
    doc = _doc(3, texts=("a", "b", "c", "d"))
    doc["similarity_matrix"] = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9, 1.0, 1.1, 1.2]]
    all_failed = _doc(2)
    ann = _annotations([doc, all_failed])
    samples = _samples(ann, lambda line, i: ("ok", _jpeg(i)) if (line, i) in ((1, 0), (1, 2)) else ("failed_decode", None))
    res = merge_shard(ann, samples, PARTIAL)
    assert len(res.records) == 1  # a doc with no image left is dropped
    rec = res.records[0]
    assert [i["raw_url"] for i in rec["image_info"]] == [doc["image_info"][0]["raw_url"], doc["image_info"][2]["raw_url"]]
    assert rec["similarity_matrix"] == [[0.1, 0.2, 0.3, 0.4], [0.9, 1.0, 1.1, 1.2]]
    assert rec["text_list"] == doc["text_list"]
    assert all(0 <= i["matched_text_index"] < len(rec["text_list"]) for i in rec["image_info"])
    assert res.doc_rows[0]["kept_images"] == [0, 2]
    assert res.doc_rows[1]["status"] == "dropped"


def test_exact_duplicate_images_are_removed_first_kept_doc_wins():
    same = _jpeg(1)
    ann = _annotations([_doc(1), _doc(2), _doc(1)])
    # doc 1 has image X; doc 2 has Y and X again; doc 3 has X again
    pics = {(1, 0): same, (2, 0): _jpeg(2), (2, 1): same, (3, 0): same}
    samples = _samples(ann, lambda line, i: ("ok", pics[(line, i)]))
    strict = merge_shard(ann, samples, ALL_OR_NOTHING)
    assert [d["status"] for d in strict.doc_rows] == ["kept", "dropped", "dropped"]
    assert strict.fates["duplicate"] == 2
    partial = merge_shard(ann, samples, PARTIAL)
    assert [d["status"] for d in partial.doc_rows] == ["kept", "kept", "dropped"]
    assert partial.doc_rows[1]["image_fates"] == ["ok", "duplicate"]


def test_merge_refuses_a_crawl_made_from_other_urls():
    ann = _annotations([_doc(1)])
    samples = _samples(ann, lambda line, i: ("ok", _jpeg(1)))
    samples["1-0"]["url"] = "http://elsewhere/x.jpg"
    with pytest.raises(Mmc4FormatError, match=r"s\.jsonl:1: image 0 was crawled from"):
        merge_shard(ann, samples)


def test_unknown_policy_is_rejected():
    with pytest.raises(ValueError, match="unknown data policy 'most'"):
        rules_for("most")


# --- inspection (what the VILA-contract checks see) ------------------------------------------------------


def _write_records(tmp_path, records, stem="docs_no_face_shard_0_v3"):
    vf.write_pickle_shard(tmp_path, stem, records)
    return stem


def _record(seeds=(1, 2), **over) -> dict:
    doc = _doc(len(seeds))
    for info, s in zip(doc["image_info"], seeds):
        info["image_base64"] = vf.jpeg_to_base64(_jpeg(s, size=(160, 120)))
    doc.update(over)
    return doc


def test_inspection_passes_a_good_shard(tmp_path):
    stem = _write_records(tmp_path, [_record((1, 2)), _record((3,))])
    seen = inspect_shard(tmp_path, stem)
    assert seen.problems == [] and seen.exact_duplicates == []
    assert (seen.n_docs, seen.n_images) == (2, 3)


def test_inspection_reports_every_contract_break(tmp_path):
    bad_mti = _record((1,))
    bad_mti["image_info"][0]["matched_text_index"] = 3
    not_jpeg = _record((2,))
    not_jpeg["image_info"][0]["image_base64"] = base64.b64encode(b"\x89PNG\r\n\x1a\nxxxx").decode()
    records = [bad_mti, not_jpeg, _record((3, 4), similarity_matrix=[[0.1, 0.2, 0.3]]),
               {k: v for k, v in _record((5,)).items() if k != "text_list"}]
    stem = _write_records(tmp_path, records)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / f"{stem}.count").write_text("5")
    problems = "\n".join(inspect_shard(tmp_path, stem).problems)
    assert "notes.txt: not a .pkl/.count file" in problems
    assert ".count: says 5 but the pickle holds 4" in problems
    assert "pkl[0] image 0: matched_text_index 3 not a valid index" in problems
    assert "pkl[1] image 0: image_base64 is not a JPEG" in problems
    assert "pkl[2]: similarity_matrix has 1 rows for 2 images" in problems
    assert "pkl[3]: text_list missing" in problems


def test_inspection_finds_exact_and_near_duplicates(tmp_path):
    from PIL import Image
    import io

    img = render_photo("blue", "square", 5, 160, 120)
    a = encode(img, "JPEG", quality=90)
    near = encode(img.resize((150, 112), Image.Resampling.BICUBIC), "JPEG", quality=60)
    recs = [_record((1,)), _record((2,)), _record((3,))]
    recs[0]["image_info"][0]["image_base64"] = vf.jpeg_to_base64(a)
    recs[1]["image_info"][0]["image_base64"] = vf.jpeg_to_base64(a)
    recs[2]["image_info"][0]["image_base64"] = vf.jpeg_to_base64(near)
    stem = _write_records(tmp_path, recs)
    seen = inspect_shard(tmp_path, stem, max_distance=3)
    assert seen.exact_duplicates == [(f"{stem}.pkl[0] image 0", f"{stem}.pkl[1] image 0")]
    assert seen.near_duplicates == 1 and seen.near_examples[0][:2] == (f"{stem}.pkl[0] image 0", f"{stem}.pkl[2] image 0")
    assert Image.open(io.BytesIO(near)).size == (150, 112)


def test_inspection_reports_a_missing_count(tmp_path):
    stem = _write_records(tmp_path, [_record((1,))])
    (tmp_path / f"{stem}.count").unlink()
    problems = inspect_shard(tmp_path, stem).problems
    assert problems == [f"{tmp_path / stem}.count: missing"]
    with open(tmp_path / f"{stem}.pkl", "rb") as fh:
        assert len(pickle.load(fh)) == 1


def test_url_template_source_downloads_into_the_cache_and_reports_dead_links(tmp_path):
    from vila_assets.core.mmc4 import fetch_shard
    from vila_assets.sample_world.hub_server import FakeHub

    repo = tmp_path / "hub" / "datasets" / "org" / "mmc4"
    repo.mkdir(parents=True)
    (repo / "docs_shard_0_v3.jsonl").write_text(json.dumps(_doc(1)) + "\n")
    with FakeHub(tmp_path / "hub") as endpoint:
        spec = SourceSpec(location=f"{endpoint}/datasets/org/mmc4/resolve/main/docs_shard_{{index}}_v3.jsonl")
        shards = list_source(spec).shards
        local = fetch_shard(spec, shards["00000"], cache_dir=tmp_path / "cache")
        assert local == tmp_path / "cache" / "docs_shard_0_v3.jsonl"
        assert [r["status"] for r in parse_shard(local).rows] == ["valid"]
        with pytest.raises(Mmc4FormatError, match=r"docs_shard_1_v3\.jsonl: download failed \(HTTP 404"):
            fetch_shard(spec, shards["00001"], cache_dir=tmp_path / "cache", retries=0)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["docs_shard_0_v3.jsonl"]


# --- one URL in two slots; the vila rules ----------------------------------------------------------------


def test_one_url_in_two_slots_is_one_download_serving_both():
    doc = _doc(3, texts=("a", "b", "c", "d"))
    doc["image_info"][2]["raw_url"] = doc["image_info"][0]["raw_url"]
    ann = _annotations([doc])
    rows = crawl_rows(ann)
    assert [r["key"] for r in rows] == ["1-0", "1-1"]  # slot 2 is served by slot 0's download
    samples = _samples(ann, lambda line, i: ("ok", _jpeg(i)))
    for rules in (rules_for("vila"), rules_for("curated"), ALL_OR_NOTHING):
        res = merge_shard(ann, samples, rules)
        assert res.doc_rows[0]["image_fates"] == ["ok", "ok", "ok"], rules
        infos = res.records[0]["image_info"]
        assert infos[2]["image_base64"] == infos[0]["image_base64"] != infos[1]["image_base64"]
        assert res.shared_slots == 1 and res.fates["duplicate"] == 0


def test_a_reused_url_is_not_an_exact_duplicate_on_inspection(tmp_path):
    rec = _record((1, 2))
    rec["image_info"][1] = dict(rec["image_info"][0], matched_text_index=2)  # same URL, same bytes
    other = _record((1,))  # the same bytes in another doc: a duplicate
    stem = _write_records(tmp_path, [rec, other])
    seen = inspect_shard(tmp_path, stem)
    assert seen.exact_duplicates == [(f"{stem}.pkl[0] image 0", f"{stem}.pkl[1] image 0")]


def test_vila_rules_lose_docs_whose_url_gives_no_file_name():
    """VILA saves image i as ``f"{i:03d}." + raw_url.split(".")[-1]``: for an extensionless URL the name
    holds a '/', the open fails and the whole doc is lost; a query string after an extension is fine."""
    from vila_assets.core.mmc4_merge import UNSAVEABLE_NAME, vila_file_name

    assert vila_file_name(0, "https://cdn.x.com/img/123") is None
    assert vila_file_name(1, "https://x.com/a.jpg?w=640&ref=post.3.html") == "001.html"
    assert vila_file_name(2, "https://x.com/a.jpg?w=640") == "002.jpg?w=640"
    assert vila_file_name(3, "https://x.com/a." + "x" * 260) is None  # longer than a file name may be
    docs = [_doc(2, url_fmt="https://cdn.x.com/img/{i}"), _doc(1, url_fmt="https://x.com/{i}.jpg?w=9&ref=a.html")]
    ann = _annotations(docs)
    samples = _samples(ann, lambda line, i: ("ok", _jpeg(line * 10 + i)))
    vila = merge_shard(ann, samples, rules_for("vila"))
    assert [d["status"] for d in vila.doc_rows] == ["dropped", "kept"]
    assert vila.doc_rows[0]["image_fates"] == [UNSAVEABLE_NAME, UNSAVEABLE_NAME]
    curated = merge_shard(ann, samples, rules_for("curated"))
    assert [d["status"] for d in curated.doc_rows] == ["kept", "kept"]


def test_vila_rules_keep_duplicates_and_are_all_or_nothing():
    same = _jpeg(1)
    ann = _annotations([_doc(1), _doc(2), _doc(1)])
    pics = {(1, 0): same, (2, 0): _jpeg(2), (2, 1): None, (3, 0): same}
    samples = _samples(ann, lambda line, i: ("ok", pics[(line, i)]) if pics[(line, i)] else ("failed_download", None))
    vila = merge_shard(ann, samples, rules_for("vila", keep_partial_docs=True, dedup_images=True))  # switches: curated only
    assert [d["status"] for d in vila.doc_rows] == ["kept", "dropped", "kept"]
    assert vila.records[0]["image_info"][0]["image_base64"] == vila.records[1]["image_info"][0]["image_base64"]
    curated = merge_shard(ann, samples, rules_for("curated"))
    assert [d["status"] for d in curated.doc_rows] == ["kept", "kept", "dropped"]
    no_dedup = merge_shard(ann, samples, rules_for("curated", dedup_images=False))
    assert [d["status"] for d in no_dedup.doc_rows] == ["kept", "kept", "kept"]
    strict = merge_shard(ann, samples, rules_for("curated", keep_partial_docs=False))
    assert [d["status"] for d in strict.doc_rows] == ["kept", "dropped", "dropped"]


def test_vila_size_truncates_the_long_side():
    from vila_assets.core.mmc4_merge import vila_size

    assert vila_size(1002, 700) == (480, 336)  # 480.96: VILA's int() truncates; rounding gives 481
    assert vila_size(700, 1002) == (336, 480)
    assert vila_size(640, 480) == (448, 336) and vila_size(512, 512) == (336, 336)
    assert vila_size(336, 900) == (336, 900) and vila_size(300, 200) == (300, 200)  # not larger: untouched


def test_vila_rules_bring_the_crawlers_rounding_to_vilas_size():
    from PIL import Image
    import io

    crawled = encode(render_photo("red", "circle", 3, 481, 336), "JPEG", quality=75)  # round(336*1002/700)
    exact = encode(render_photo("red", "circle", 4, 448, 336), "JPEG", quality=75)
    ann = _annotations([_doc(2)])
    sizes = {0: (crawled, 481, 336, 1002, 700), 1: (exact, 448, 336, 640, 480)}
    samples = {}
    for r in crawl_rows(ann):
        img, w, h, ow, oh = sizes[r["image_index"]]
        samples[r["key"]] = {"url": r["url"], "status": "ok", "image": img, "width": w, "height": h,
                             "orig_width": ow, "orig_height": oh}
    vila = merge_shard(ann, samples, rules_for("vila"))
    images = [base64.b64decode(i["image_base64"]) for i in vila.records[0]["image_info"]]
    assert [Image.open(io.BytesIO(b)).size for b in images] == [(480, 336), (448, 336)]
    assert images[1] == exact and vila.images_resized == 1  # already VILA's size: the crawler's bytes
    curated = merge_shard(ann, samples, rules_for("curated"))
    assert base64.b64decode(curated.records[0]["image_info"][0]["image_base64"]) == crawled


def test_a_shard_without_surviving_docs_gets_no_pair(tmp_path):
    ann = _annotations([_doc(1)])
    res = merge_shard(ann, _samples(ann, lambda line, i: ("failed_download", None)), rules_for("vila"))
    assert res.records == []
    assert inspect_shard(tmp_path, "docs_no_face_shard_0_v3", expect_pair=False).problems == []
    stem = _write_records(tmp_path, [_record((1,))])
    assert inspect_shard(tmp_path, stem, expect_pair=False).problems == [
        f"{tmp_path / stem}.pkl: left over, but the shard has no surviving doc",
        f"{tmp_path / stem}.count: left over, but the shard has no surviving doc"]


# --- the published directory at the training world size ----------------------------------------------------


def test_published_counts_follow_the_loader_on_local_and_fsspec_directories(tmp_path):
    from vila_assets.core.mmc4_merge import published_counts

    import fsspec

    for stem, n in (("docs_no_face_shard_3_v3", 2), ("docs_no_face_shard_10_v3", 5), ("docs_no_face_shard_1_v3", 1)):
        vf.write_pickle_shard(tmp_path / "pkl", stem, [_record((1,))] * n)
    expected = [("docs_no_face_shard_10_v3", 5), ("docs_no_face_shard_1_v3", 1), ("docs_no_face_shard_3_v3", 2)]
    assert published_counts(str(tmp_path / "pkl")) == expected  # name order, as the loader sorts
    fs = fsspec.filesystem("memory")
    for p in (tmp_path / "pkl").iterdir():
        fs.pipe(f"/mmc4-pub/pkl-core/{p.name}", p.read_bytes())
    assert published_counts("memory://mmc4-pub/pkl-core") == expected
    assert published_counts(str(tmp_path / "none")) == []
    fs.pipe("/mmc4-pub/pkl-core/docs_no_face_shard_3_v3.count", b"two")
    with pytest.raises(Mmc4FormatError, match=r"pkl-core/docs_no_face_shard_3_v3\.count: not a decimal integer"):
        published_counts("memory://mmc4-pub/pkl-core")
