"""The ``vila`` policy gives what VILA's MMC4 scripts give: an independent plain-Python transcription of
``mmc4_downloader.py`` (per-doc logic, synchronous), ``mmc4_filter_and_counter.py`` and
``mmc4_merger.py`` runs over the sample world's shards, and its ``pkl-core`` is compared with ours.

What may differ, and how the comparison deals with it:

- Fetching. Both sides see the same outcome per URL: our crawl's. The transcription's ``fetch`` returns
  the raw bytes of the URL (a plain GET) where the crawler got a body, the HTTP status where it got an
  error status, and raises where it got nothing. A separate test shows the crawl disagrees with a plain
  GET (VILA's network behaviour) only where POLICY_DIFFERENCES says so: opt-out headers and long redirect
  chains.
- Imaging. VILA decodes with Pillow and re-encodes; our crawler has its own decoder and resizer, so the
  JPEG bytes differ. Compared: decoded sizes (equal) and pixels (close).
- Inputs VILA cannot process. A malformed line crashes VILA's downloader (shown below) and a doc its loader
  cannot read breaks training, so the transcription gets the loader-readable lines only; we report the
  others and leave them out (POLICY_DIFFERENCES).

Everything else must be equal: the shards written, the records, their order and every field but the image.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import dagster as dg
import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.dagster_runs import defs_for, failure_text, run
from vila_assets.assets.mmc4 import mmc4_shards
from vila_assets.assets.mmc4.layout import Mmc4Layout
from vila_assets.profiles import data_root_at
from vila_assets.sample_world.sources.mmc4 import REPO, shard_indices, write_low_yield_shard

ALL = ("mmc4_annotations", "mmc4_images", "mmc4_core_shard")
LOW_YIELD = 9  # the index of the mostly dead shard
MAX_MEAN_PIXEL_DIFF = 6.0  # of 255: two resizers and two JPEG encoders; a wrong image differs by far more


# --- VILA's scripts, transcribed ------------------------------------------------------------------------------


def _vila_download_doc(fetch, data: dict, output_dict: dict, tmp: Path) -> None:
    """``download_file`` of mmc4_downloader.py, one doc, images fetched in order; files really written."""
    base = os.path.join(tmp, f"{data['shard']}")
    os.makedirs(base, exist_ok=True)
    base = os.path.join(base, f"{data['shard_idx']:09d}")
    os.makedirs(base, exist_ok=True)
    success, downloaded = True, []
    for i_image, image_info in enumerate(data["image_info"]):
        try:
            status, body = fetch(image_info["raw_url"])
            if status == 200:
                f_name = os.path.join(base, f"{i_image:03d}." + image_info["raw_url"].split(".")[-1])
                with open(f_name, "wb") as f:
                    f.write(body)
                downloaded.append(f_name)
            else:
                success = False
        except Exception:  # noqa: BLE001 - the script's own catch-all
            success = False
            break
    if not success:
        shutil.rmtree(base)
    else:
        try:
            for fname in downloaded:
                img = Image.open(fname).convert("RGB")
                size_limit = 336
                if min(img.size) > size_limit:
                    w, h = img.size
                    if h < w:
                        new_h, new_w = size_limit, int(size_limit * w / h)
                    else:
                        new_w, new_h = size_limit, int(size_limit * h / w)
                    img = img.resize((new_w, new_h))
                buffered = io.BytesIO()
                img.save(buffered, format="JPEG")
                img_b64_str = base64.b64encode(buffered.getvalue()).decode()
                output_dict.setdefault(data["shard"], {}).setdefault(data["shard_idx"], {})[fname.split("/")[-1]] = img_b64_str
        except Exception:  # noqa: BLE001
            success = False
            shutil.rmtree(base)
        if not success and data["shard"] in output_dict and data["shard_idx"] in output_dict[data["shard"]]:
            output_dict[data["shard"]].pop(data["shard_idx"])
    if os.path.exists(base):
        shutil.rmtree(base)


def vila_downloader(input_dir: Path, output_dir: Path, fetch, tmp: Path) -> None:
    jsonl_list = sorted(os.listdir(input_dir))
    all_data = []
    for fname in jsonl_list:
        with open(os.path.join(input_dir, fname)) as json_file:
            json_list = list(json_file)
        data_list = [json.loads(json_str) for json_str in json_list]
        for i_d, d in enumerate(data_list):
            d["shard"] = fname.split(".")[0]
            d["shard_idx"] = i_d
        all_data.extend(data_list)
    output_dict: dict = {}
    for data in all_data:
        _vila_download_doc(fetch, data, output_dict, tmp)
    os.makedirs(output_dir, exist_ok=True)
    for k, v in output_dict.items():
        with open(os.path.join(output_dir, k + ".pkl"), "wb") as f:
            pickle.dump(v, f)


def vila_filter_and_counter(pkl_path: Path, jsonl_path: Path, output_path: Path) -> None:
    os.makedirs(output_path, exist_ok=True)  # the script expects it to exist
    for pkl in sorted(os.listdir(pkl_path)):
        with open(os.path.join(pkl_path, pkl), "rb") as f:
            image_dict = pickle.load(f)
        with open(os.path.join(jsonl_path, pkl.replace(".pkl", ".jsonl"))) as json_file:
            annotation = [json.loads(json_str) for json_str in list(json_file)]
        filtered_annotation = []
        for i, anno in enumerate(annotation):
            if i in image_dict:
                assert len(image_dict[i]) == len(anno["image_info"])
                anno["org_idx"] = i
                filtered_annotation.append(anno)
        assert len(filtered_annotation) == len(image_dict)
        with open(os.path.join(output_path, pkl.replace(".pkl", ".jsonl")), "w") as outfile:
            for record in filtered_annotation:
                json.dump(record, outfile)
                outfile.write("\n")
        with open(os.path.join(output_path, pkl.replace(".pkl", ".count")), "w") as f:
            f.write(str(len(filtered_annotation)))


def vila_merger(data_path: Path, pkl_path: Path, output_path: Path) -> None:
    os.makedirs(output_path, exist_ok=True)  # the script expects it to exist
    for shard_name in [f for f in os.listdir(data_path) if f.endswith(".jsonl")]:
        with open(os.path.join(data_path, shard_name)) as json_file:
            data_list = [json.loads(json_str) for json_str in list(json_file)]
        with open(os.path.join(pkl_path, shard_name.replace(".jsonl", ".pkl")), "rb") as f:
            image_dict = pickle.load(f)
        assert len(data_list) == len(image_dict)
        for data in data_list:
            org_idx = data.pop("org_idx")
            assert len(data["image_info"]) == len(image_dict[org_idx])
            image_list = [image_dict[org_idx][k] for k in sorted(image_dict[org_idx].keys())]
            for i, image in enumerate(image_list):
                data["image_info"][i]["image_base64"] = image
        with open(os.path.join(output_path, shard_name.replace(".jsonl", ".pkl")), "wb") as f:
            pickle.dump(data_list, f)


def vila_pipeline(jsonl_dir: Path, work: Path, fetch) -> dict[str, list[dict]]:
    """The three scripts in order (paths made consistent); ``pkl-core`` by file name."""
    vila_downloader(jsonl_dir, work / "pkl", fetch, work / "tmp")
    vila_filter_and_counter(work / "pkl", jsonl_dir, work / "jsonl-filtered")
    vila_merger(work / "jsonl-filtered", work / "pkl", work / "pkl-core")
    out = {}
    for name in sorted(os.listdir(work / "pkl-core")):
        with open(work / "pkl-core" / name, "rb") as f:
            out[name] = pickle.load(f)
    return out


# --- inputs and fetching ----------------------------------------------------------------------------------------


def loader_readable(line: str) -> bool:
    """A line VILA's scripts process and its loader can read (JSON object, sentences, in-range image
    indices, a similarity row per image)."""
    try:
        doc = json.loads(line)
    except ValueError:
        return False
    if not isinstance(doc, dict) or not isinstance(doc.get("text_list"), list) or not doc.get("image_info"):
        return False
    n = len(doc["text_list"])
    return (all(isinstance(i.get("matched_text_index"), int) and 0 <= i["matched_text_index"] < n
                for i in doc["image_info"]) and len(doc.get("similarity_matrix") or []) >= len(doc["image_info"]))


def unzip_shards(source: Path, target: Path, keep=loader_readable) -> Path:
    """Each shard as the ``.jsonl`` VILA's downloader expects (zips unzipped), keeping the lines ``keep``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                (member,) = zf.namelist()
                name, text = member, zf.read(member).decode()
        else:
            name, text = path.name, path.read_text()
        (target / name).write_text("".join(line for line in text.splitlines(keepends=True) if keep(line)))
    return target


def plain_get(url: str, max_redirects: int = 10) -> tuple[int, bytes]:
    """A GET as VILA's aiohttp session does it (redirects followed, up to 10, no header honoured), kept on
    the sample world's own host: a redirect elsewhere (a private address) is a connection error here."""
    host = urlsplit(url).netloc
    with httpx.Client(timeout=20.0) as client:
        for _ in range(max_redirects + 1):
            r = client.get(url)
            if r.status_code not in (301, 302, 303, 307, 308):
                return r.status_code, r.content
            url = urljoin(url, r.headers["location"])
            if urlsplit(url).netloc != host:
                raise ConnectionError(f"{url}: not reachable from this test")
        raise RuntimeError("too many redirects")


@dataclass(frozen=True)
class Outcome:
    status: str  # the crawl's sample status
    http_status: int | None


def replay_fetch(outcomes: dict[str, Outcome]):
    """The transcription's fetch: what our crawl got for each URL, with the raw body where it got one."""

    def fetch(url: str) -> tuple[int, bytes]:
        o = outcomes[url]
        if o.status in ("ok", "failed_decode") and o.http_status == 200:
            return plain_get(url)
        if o.http_status and o.http_status != 200:
            return o.http_status, b""
        raise ConnectionError(f"{url}: {o.status}")

    return fetch


# --- our side: the assets under the vila policy -----------------------------------------------------------------


@dataclass
class Ours:
    source: Path  # the shard files, as the source directory holds them
    layout: Mmc4Layout
    outcomes: dict[str, Outcome]


def _outcomes(layout: Mmc4Layout, keys: list[str]) -> dict[str, Outcome]:
    out = {}
    for key in keys:
        for r in pq.read_table(layout.images_manifest(key), columns=["url", "status", "http_status"]).to_pylist():
            out[r["url"]] = Outcome(r["status"], r["http_status"])
    return out


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """The MMC4 assets under the vila policy over a directory source: every shard of a private test-scale
    world (zipped) plus the mostly dead low-yield shard (a plain ``.jsonl``: every fault kind of the image
    web, and probably no surviving doc). Yield bounds are off: the comparison wants every shard written."""
    from vila_assets.assets.mmc4 import Mmc4Source
    from vila_assets.sample_world.world import SampleWorld

    keys = [f"{i:05d}" for i in shard_indices("test")] + [f"{LOW_YIELD:05d}"]
    root, source = tmp_path_factory.mktemp("mmc4-vila"), tmp_path_factory.mktemp("mmc4-vila-source")
    config = {"resources": {"data_policy": {"config": {"policy": "vila", "train_world_size": 4}}},
              "ops": {"mmc4_images": {"config": {"checks": {"min_image_yield": 0.0}}},
                      "mmc4_core_shard": {"config": {"checks": {"min_doc_yield": 0.0}}}}}
    with SampleWorld(tmp_path_factory.mktemp("mmc4-world"), scale="test", clip=False,
                     families=["mmc4"]) as world, dg.instance_for_test() as instance:
        for z in (world.hub_root / "datasets" / REPO).glob("*.jsonl.zip"):
            shutil.copy(z, source)
        write_low_yield_shard(source, world.image_base, index=LOW_YIELD)
        instance.add_dynamic_partitions(mmc4_shards.name, keys)
        result = run(defs_for(world, root, mmc4_source=Mmc4Source(location=str(source))), instance, ALL, keys,
                     run_config=config)
        assert result.success, failure_text(result)
        layout = Mmc4Layout(data_root_at(str(root)))
        yield Ours(source, layout, _outcomes(layout, keys))


def _pkl_core(directory: Path) -> dict[str, list[dict]]:
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".pkl"):
            with open(directory / name, "rb") as f:
                out[name] = pickle.load(f)
    return out


def _without_images(rec: dict) -> str:
    """The record as JSON, image_base64 left out: equal strings mean equal fields in equal order."""
    return json.dumps({**rec, "image_info": [{k: v for k, v in i.items() if k != "image_base64"}
                                             for i in rec["image_info"]]})


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


# --- the comparison -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vila_policy_gives_vilas_records_in_vilas_order(ours, tmp_path):
    theirs = vila_pipeline(unzip_shards(ours.source, tmp_path / "jsonl"), tmp_path / "vila", replay_fetch(ours.outcomes))
    mine = _pkl_core(ours.layout.pkl_dir)
    assert sorted(mine) == sorted(theirs)  # the same shards (none for a shard without surviving docs)
    assert sum(len(v) for v in theirs.values()) > 10, "too few docs survive to compare anything"
    for name, records in theirs.items():
        assert [_without_images(r) for r in mine[name]] == [_without_images(r) for r in records], name
        for d, (a, b) in enumerate(zip(mine[name], records)):
            for i, (ia, ib) in enumerate(zip(a["image_info"], b["image_info"])):
                pa_, pb = _pixels(ia["image_base64"]), _pixels(ib["image_base64"])
                assert pa_.shape == pb.shape, f"{name}[{d}] image {i}: size {pa_.shape} vs VILA's {pb.shape}"
                diff = float(np.abs(pa_ - pb).mean())
                assert diff < MAX_MEAN_PIXEL_DIFF, f"{name}[{d}] image {i}: mean pixel difference {diff:.1f}"


@pytest.mark.slow
def test_the_planted_cases_are_compared(ours, tmp_path):
    """The comparison covers what the world plants for it: a URL in two slots (kept, both slots served by
    one download), a size VILA truncates, and extensionless URLs (their docs lost, as in VILA)."""
    records = [r for recs in _pkl_core(ours.layout.pkl_dir).values() for r in recs]
    reused = [r for r in records if len({i["raw_url"] for i in r["image_info"]}) < len(r["image_info"])]
    assert reused and reused[0]["image_info"][0]["image_base64"] == reused[0]["image_info"][1]["image_base64"]
    sizes = {Image.open(io.BytesIO(base64.b64decode(i["image_base64"]))).size
             for r in records for i in r["image_info"]}
    assert (480, 336) in sizes  # the 1002x700 photo: int(336 * 1002 / 700), not 481
    assert not any("/p/" in i["raw_url"] for r in records for i in r["image_info"])
    manifests = [pq.read_table(p).to_pylist() for p in ours.layout.docs_manifest("00000").parent.glob("*.parquet")]
    assert any("unsaveable_name" in d["image_fates"] for rows in manifests for d in rows)


@pytest.mark.slow
def test_the_crawl_differs_from_a_plain_get_only_where_declared(ours):
    """VILA's session follows up to 10 redirects and honours no header; our crawler (both policies) stops
    at 5 redirects and honours ``X-Robots-Tag: noai``. Nothing else may differ."""
    disagree = []
    for url, o in ours.outcomes.items():
        try:
            status, body = plain_get(url)
            fetched = status == 200 and bool(body)
        except Exception:  # noqa: BLE001
            fetched = False
        if fetched != (o.status in ("ok", "failed_decode")):
            disagree.append(url)
    assert len({o.status for o in ours.outcomes.values()}) >= 3, "the world should exercise several failures"
    assert all("/robots/" in u or "/redirect/9/" in u for u in disagree), disagree


def test_a_malformed_line_crashes_vilas_downloader(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "docs_no_face_shard_0_v3.jsonl").write_text('{"url": "x", "text_list": ["cut off\n')
    with pytest.raises(json.JSONDecodeError):
        vila_downloader(tmp_path / "in", tmp_path / "out", lambda url: (404, b""), tmp_path / "tmp")


def test_past_999_images_vila_attaches_images_in_sorted_name_order(tmp_path):
    """``sorted(file names)`` puts ``1000.jpg`` between ``100.jpg`` and ``101.jpg``; the vila rules do the
    same, without a network: each image has its own size, which tells which image landed in which slot."""
    from vila_assets.core.mmc4 import crawl_rows
    from vila_assets.core.mmc4_merge import merge_shard, rules_for

    n = 1001
    sizes = [(10 + i % 250, 10 + i // 250) for i in range(n)]  # all below 336: nobody resizes
    doc = {"url": "http://big.example/", "text_list": ["a", "b"],
           "image_info": [{"image_name": f"{i}.jpg", "raw_url": f"http://img.example/{i}.jpg", "matched_text_index": i % 2,
                           "matched_sim": 0.3, "face_detections": None} for i in range(n)],
           "similarity_matrix": [[0.1, 0.2]] * n}
    jpeg = {}
    for i, size in enumerate(sizes):
        buf = io.BytesIO()
        Image.new("RGB", size, (i % 256, 90, 160)).save(buf, format="JPEG")
        jpeg[f"http://img.example/{i}.jpg"] = buf.getvalue()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "docs_no_face_shard_0_v3.jsonl").write_text(json.dumps(doc) + "\n")
    theirs = vila_pipeline(tmp_path / "in", tmp_path / "vila", lambda url: (200, jpeg[url]))
    ann = [dict(line=1, status="valid", reason=None, where="s:1", url=doc["url"], n_sentences=2, n_images=n,
                doc_json=json.dumps(doc))]
    samples = {r["key"]: {"url": r["url"], "status": "ok", "image": jpeg[r["url"]],
                          "width": sizes[r["image_index"]][0], "height": sizes[r["image_index"]][1],
                          "orig_width": sizes[r["image_index"]][0], "orig_height": sizes[r["image_index"]][1]}
               for r in crawl_rows(ann)}
    (mine,) = merge_shard(ann, samples, rules_for("vila")).records
    (vila_rec,) = theirs["docs_no_face_shard_0_v3.pkl"]

    def size(info) -> tuple[int, int]:
        return Image.open(io.BytesIO(base64.b64decode(info["image_base64"]))).size

    assert [size(i) for i in mine["image_info"]] == [size(i) for i in vila_rec["image_info"]]
    assert size(mine["image_info"][101]) == sizes[1000] and size(mine["image_info"][100]) == sizes[100]
