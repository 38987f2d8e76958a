"""Where MMC4 shards come from: a hub repo, a local directory (flat or with a subfolder), an fsspec URL or
a URL template, all through one listing with the same validation and errors; and every unreadable input
file named with the line reached."""

import json
import zipfile

import fsspec
import pytest

from vila_assets.core.hub import HubLocation
from vila_assets.core.mmc4 import (
    Mmc4FormatError,
    SourceSpec,
    fetch_shard,
    list_source,
    parse_shard,
    shards_from_listing,
)
from vila_assets.core.source_tree import SourceError
from vila_assets.sample_world.hub_server import FakeHub

DOC = {"url": "http://example.com/a.html", "text_list": ["One.", "Two."],
       "image_info": [{"image_name": "0a1b2c3d4e5f.jpg", "raw_url": "http://img.example/1.jpg",
                       "matched_text_index": 1, "matched_sim": 0.3, "face_detections": None}],
       "similarity_matrix": [[0.1, 0.3]]}
DOC_V11 = {**DOC, "could_have_url_duplicate": 0}


def _zip_bytes(member: str, text: str) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, text)
    return buf.getvalue()


def _shard_files(prefix: str = "") -> dict[str, bytes]:
    """Two shards as the real repo ships them (zipped, v1.1) and one unzipped v1.0 shard, with a gap."""
    return {
        f"{prefix}docs_no_face_shard_0_v3.jsonl.zip": _zip_bytes("docs_no_face_shard_0_v3.jsonl", json.dumps(DOC_V11) + "\n"),
        f"{prefix}docs_no_face_shard_1_v3.jsonl.zip": _zip_bytes("docs_no_face_shard_1_v3.jsonl", json.dumps(DOC_V11) + "\n"),
        f"{prefix}docs_no_face_shard_3_v3.jsonl": (json.dumps(DOC) + "\n").encode(),
        "README.md": b"# mmc4\n",
    }


def _write(root, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def _read_all(spec: SourceSpec, cache_dir, hub=None) -> dict[str, list[dict]]:
    listing = list_source(spec, hub)
    out = {}
    for key, shard in listing.shards.items():
        local = fetch_shard(spec, shard, hub=hub, revision=listing.revision, cache_dir=cache_dir)
        out[key] = [json.loads(r["doc_json"]) for r in parse_shard(local, display=shard.name).valid]
    return out


EXPECTED = {"00000": [DOC_V11], "00001": [DOC_V11], "00003": [DOC]}


@pytest.mark.parametrize("prefix", ["", "data_core_v1.1/"])
def test_local_directory_flat_or_subfolder(tmp_path, prefix):
    _write(tmp_path / "src", _shard_files(prefix))
    spec = SourceSpec(location=str(tmp_path / "src"))
    listing = list_source(spec)
    assert listing.missing == [2] and listing.revision is None
    assert listing.shards["00003"].path == f"{prefix}docs_no_face_shard_3_v3.jsonl"
    assert _read_all(spec, tmp_path / "cache") == EXPECTED  # 4- and 5-key records, verbatim


def test_fsspec_url_source_reads_the_same_records(tmp_path):
    fs = fsspec.filesystem("memory")
    for rel, data in _shard_files("sub/").items():
        fs.pipe(f"/mmc4-src/{rel}", data)
    spec = SourceSpec(location="memory://mmc4-src")
    listing = list_source(spec)
    assert listing.source == "memory://mmc4-src" and list(listing.shards) == ["00000", "00001", "00003"]
    assert _read_all(spec, tmp_path / "cache") == EXPECTED
    assert any((tmp_path / "cache").rglob("docs_no_face_shard_0_v3.jsonl.zip"))  # copied once, then read


def test_hub_source_pins_the_revision(tmp_path):
    _write(tmp_path / "hub" / "datasets" / "org" / "mmc4", _shard_files())
    with FakeHub(tmp_path / "hub") as endpoint:
        hub = HubLocation(endpoint=endpoint, cache_dir=str(tmp_path / "hf"))
        for location in ("hf:org/mmc4", "org/mmc4"):
            spec = SourceSpec(location=location)
            listing = list_source(spec, hub)
            assert len(listing.revision) == 40 and listing.source == f"org/mmc4@{listing.revision}"
            assert _read_all(spec, tmp_path / "cache", hub) == EXPECTED


def test_same_errors_for_every_kind_of_source(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match=r"empty: no MMC4 shard files .* 1 file\(s\): notes\.txt"):
        list_source(SourceSpec(location=str(tmp_path / "empty")))
    fsspec.filesystem("memory").pipe("/mmc4-empty/notes.txt", b"x")
    with pytest.raises(SourceError, match=r"memory://mmc4-empty: no MMC4 shard files"):
        list_source(SourceSpec(location="memory://mmc4-empty"))
    with pytest.raises(SourceError, match="does not exist"):
        list_source(SourceSpec(location=str(tmp_path / "nope")))
    with pytest.raises(SourceError, match="memory://mmc4-nope: source does not exist"):
        list_source(SourceSpec(location="memory://mmc4-nope"))
    with pytest.raises(SourceError, match=r"needs an '\{index\}' placeholder"):
        list_source(SourceSpec(location="https://host/data/docs_shard_0_v3.jsonl"))
    with pytest.raises(SourceError, match="not a hub repo id"):
        list_source(SourceSpec(location="mmc4-core-ff"))


def test_a_shard_found_twice_under_different_names_is_ambiguous():
    with pytest.raises(Mmc4FormatError, match=r"shard 4 is ambiguous: a/docs_shard_4_v3\.jsonl, b/docs_shard_4_v3\.jsonl"):
        shards_from_listing(["a/docs_shard_4_v3.jsonl", "b/docs_shard_4_v3.jsonl"])
    with pytest.raises(Mmc4FormatError, match="shard 4 is ambiguous"):
        shards_from_listing(["docs_shard_4_v3.jsonl", "docs_no_face_shard_4_v3.jsonl.zip"])
    # a person's unzipped copy beside the zip is not ambiguous: the plain file is read
    shards = shards_from_listing(["x/docs_shard_4_v3.jsonl.zip", "x/docs_shard_4_v3.jsonl"])
    assert shards["00004"].path == "x/docs_shard_4_v3.jsonl"


# --- unreadable input files -------------------------------------------------------------------------------


def test_a_file_that_is_not_a_zip_is_named(tmp_path):
    path = tmp_path / "docs_no_face_shard_5_v3.jsonl.zip"
    path.write_bytes(b"<html>Access denied</html>")
    with pytest.raises(Mmc4FormatError, match=r"^docs_no_face_shard_5_v3\.jsonl\.zip: not a readable zip"):
        parse_shard(path)


def test_a_corrupt_zip_member_names_file_and_line(tmp_path):
    import random

    rng = random.Random(6)  # incompressible-enough text, so the deflated stream is long
    lines = "".join(json.dumps({**DOC_V11, "url": f"http://example.com/{rng.getrandbits(128):x}"}) + "\n"
                    for _ in range(400))
    member = "docs_no_face_shard_6_v3.jsonl"
    data = bytearray(_zip_bytes(member, lines))
    # flip bytes deep inside the deflated stream: the member opens, then breaks mid-way
    start = 30 + len(member)
    for i in range(start + 2000, start + 2040):
        data[i] ^= 0xFF
    path = tmp_path / f"{member}.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(Mmc4FormatError, match=rf"{member}\.zip!{member}:\d+: unreadable after line \d+"):
        parse_shard(path)


def test_bad_json_and_invalid_utf8_lines_name_file_and_line(tmp_path):
    path = tmp_path / "docs_no_face_shard_7_v3.jsonl"
    path.write_bytes(json.dumps(DOC).encode() + b"\n" + b'{"url": "\xff\xfe"}\n' + b"{not json\n")
    parsed = parse_shard(path)
    reasons = {r["where"]: r["reason"] for r in parsed.invalid}
    assert reasons["docs_no_face_shard_7_v3.jsonl:2"].startswith("bad JSON")
    assert reasons["docs_no_face_shard_7_v3.jsonl:3"].startswith("bad JSON")
    with pytest.raises(Mmc4FormatError, match=r"docs_no_face_shard_7_v3\.jsonl:2: bad JSON"):
        parse_shard(path, strict=True)
