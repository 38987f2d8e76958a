"""Image roots, Dagster-free: resumable verified downloads against the archive host, safe atomic installs
of one or several archives, coverage, and OCR-VQA's dataset.json and covers."""

import io
import json
import os
import tarfile
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vila_assets.core.image_roots import (
    ArchiveSpec,
    RootError,
    coverage,
    field_name,
    install_root,
    references_by_root,
)
from vila_assets.core.ocr_vqa import OcrVqaError, read_covers, save_covers
from vila_assets.core.ranged_download import DownloadError, download, mirrored, sha256_of
from vila_assets.core.safe_tar import safe_untar
from vila_assets.core.safe_zip import UnsafeZipError
from vila_assets.sample_world.archive_web import ArchiveWeb

PATH = "/zips/train2017.zip"
OFFICIAL = "http://images.cocodataset.org/zips/train2017.zip"


@pytest.fixture
def web(tmp_path):
    """An archive host serving a 3 MB file at COCO's path."""
    served = tmp_path / "served"
    (served / "zips").mkdir(parents=True)
    (served / "zips/train2017.zip").write_bytes(os.urandom(3_000_000))
    web = ArchiveWeb(served)
    web.start()
    yield web
    web.stop()


def _get(web, dest, **kw):
    kw.setdefault("backoff", 0.01)
    return download(OFFICIAL, dest, fetch_url=web.base_url + PATH, **kw)


# --- downloads --------------------------------------------------------------------------------------------


def test_a_dropped_connection_resumes_from_the_byte_it_stopped_at(web, tmp_path):
    served = web.root / "zips/train2017.zip"
    web.drop_once(PATH)
    got = _get(web, tmp_path / "out/train2017.zip", expected_size=served.stat().st_size,
               expected_sha256=sha256_of(served))
    assert got.path.read_bytes() == served.read_bytes()
    assert got.reconnects == 1 and not got.reused
    (first, no_range), (second, ranged) = web.requests
    assert no_range is None and ranged == f"bytes={served.stat().st_size // 2}-"  # not from zero
    assert not list(got.path.parent.glob("*.part*"))


def test_an_interrupted_run_leaves_a_part_that_the_next_run_continues(web, tmp_path):
    dest = tmp_path / "out/train2017.zip"
    received = []

    def kill_after_a_megabyte(n):
        received.append(n)
        if sum(received) > 1 << 20:
            raise KeyboardInterrupt  # the process dies mid-download

    with pytest.raises(KeyboardInterrupt):
        _get(web, dest, on_bytes=kill_after_a_megabyte)
    part = dest.with_name(dest.name + ".part")
    kept = part.stat().st_size
    assert kept > 1 << 20 and not dest.exists()
    got = _get(web, dest)
    assert got.resumed_from == kept and web.requests[-1][1] == f"bytes={kept}-"
    assert dest.read_bytes() == (web.root / "zips/train2017.zip").read_bytes()


def test_a_file_changed_on_the_server_between_runs_is_fetched_whole(web, tmp_path):
    dest = tmp_path / "out/train2017.zip"
    with pytest.raises(KeyboardInterrupt):
        _get(web, dest, on_bytes=lambda n: (_ for _ in ()).throw(KeyboardInterrupt))
    new = os.urandom(2_000_000)
    (web.root / "zips/train2017.zip").write_bytes(new)  # new ETag: If-Range makes the server send it all
    got = _get(web, dest)
    assert dest.read_bytes() == new and got.size == len(new)


def test_a_completed_download_is_reused_without_a_request(web, tmp_path):
    dest = tmp_path / "out/train2017.zip"
    first = _get(web, dest)
    n = len(web.requests)
    again = _get(web, dest, expected_sha256=first.sha256)
    assert again.reused and len(web.requests) == n and again.sha256 == first.sha256


@pytest.mark.parametrize("kw, message", [
    ({"expected_size": 123}, "3000000 bytes, expected 123"),
    ({"expected_sha256": "0" * 64}, "expected " + "0" * 64),
])
def test_a_download_that_does_not_verify_fails_naming_the_url(web, tmp_path, kw, message):
    dest = tmp_path / "out/train2017.zip"
    with pytest.raises(DownloadError) as err:
        _get(web, dest, **kw)
    assert OFFICIAL in str(err.value) and web.base_url in str(err.value) and message in str(err.value)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_a_missing_file_fails_naming_the_url_and_status(web, tmp_path):
    with pytest.raises(DownloadError, match=r"http://images.cocodataset.org/zips/nope.zip .*HTTP 404"):
        download("http://images.cocodataset.org/zips/nope.zip", tmp_path / "x.zip",
                 fetch_url=web.base_url + "/zips/nope.zip")


def test_transient_errors_are_retried_and_a_dead_host_gives_up(web, tmp_path):
    web.fail_next(PATH, 503, times=2)
    assert _get(web, tmp_path / "a.zip").size == 3_000_000
    web.fail_next(PATH, 503, times=10)
    with pytest.raises(DownloadError, match="gave up after 3 attempts without progress: HTTP 503"):
        _get(web, tmp_path / "b.zip", retries=2)


def test_mirrors_replace_the_longest_matching_base():
    mirrors = {"https://cs.stanford.edu": "http://m1", "https://cs.stanford.edu/people/rak248": "http://m2/vg"}
    vg = "https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip"
    assert mirrored(vg, mirrors) == "http://m2/vg/VG_100K_2/images.zip"
    assert mirrored("https://cs.stanford.edu/other.zip", mirrors) == "http://m1/other.zip"
    assert mirrored("https://cs.stanford.edu.evil/x.zip", mirrors) == "https://cs.stanford.edu.evil/x.zip"
    assert mirrored("http://images.cocodataset.org/zips/a.zip", {}) == "http://images.cocodataset.org/zips/a.zip"


# --- installing a root ---------------------------------------------------------------------------------------


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _tar(path, files, links=()):
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


def test_an_archive_is_unpacked_into_the_root_without_its_top_folder(tmp_path):
    archive = _zip(tmp_path / "train2017.zip", {"train2017/1.jpg": b"a", "train2017/2.jpg": b"bb"})
    dest = tmp_path / "data/coco/train2017"
    assert install_root(dest, [(archive, ArchiveSpec("u", "train2017"))]) == (2, 3)
    assert sorted(p.name for p in dest.iterdir()) == ["1.jpg", "2.jpg"]
    assert [p.name for p in dest.parent.iterdir()] == ["train2017"]  # no staging left behind


def test_several_archives_make_one_root_keeping_only_included_files(tmp_path):
    a = _tar(tmp_path / "sa_000000.tar", {"sa_1.jpg": b"1", "sa_1.json": b"{}"})
    b = _tar(tmp_path / "sa_000001.tar", {"sa_2.jpg": b"2", "sa_2.json": b"{}"})
    dest = tmp_path / "sam/images"
    install_root(dest, [(a, ArchiveSpec("ua", include="*.jpg")), (b, ArchiveSpec("ub", include="*.jpg"))])
    assert sorted(p.name for p in dest.iterdir()) == ["sa_1.jpg", "sa_2.jpg"]


def test_a_name_two_archives_give_is_an_error(tmp_path):
    a = _zip(tmp_path / "a.zip", {"x.jpg": b"1"})
    b = _zip(tmp_path / "b.zip", {"x.jpg": b"2"})
    with pytest.raises(RootError, match=r"b.zip \(ub\): x.jpg is also in an earlier archive"):
        install_root(tmp_path / "r", [(a, ArchiveSpec("ua")), (b, ArchiveSpec("ub"))])
    assert not (tmp_path / "r").exists()


def test_a_missing_folder_names_the_archive_and_what_it_holds(tmp_path):
    archive = _zip(tmp_path / "images.zip", {"VG_100K/1.jpg": b"1"})
    with pytest.raises(RootError, match=r"images.zip \(u\): no folder 'VG_100K_2' .* holds \['VG_100K/'\]"):
        install_root(tmp_path / "vg/VG_100K_2", [(archive, ArchiveSpec("u", "VG_100K_2"))])


def test_an_unsafe_archive_leaves_the_installed_root_untouched(tmp_path):
    dest = tmp_path / "gqa/images"
    install_root(dest, [(_zip(tmp_path / "good.zip", {"images/1.jpg": b"1"}), ArchiveSpec("u", "images"))])
    evil = _zip(tmp_path / "evil.zip", {"images/2.jpg": b"2", "../../escaped.jpg": b"x"})
    with pytest.raises(UnsafeZipError, match=r"^u: .*evil.zip: entry '../../escaped.jpg'"):
        install_root(dest, [(evil, ArchiveSpec("u", "images"))])
    assert sorted(p.name for p in dest.iterdir()) == ["1.jpg"]
    assert not list(tmp_path.rglob("escaped.jpg"))


@pytest.mark.parametrize("files, links, message", [
    ({"a.jpg": b"1"}, [("link.jpg", "/etc/passwd")], "member 'link.jpg': not a plain file"),
    ({"../up.jpg": b"1"}, [], "member '../up.jpg': '..' component escapes"),
    ({"/abs.jpg": b"1"}, [], "member '/abs.jpg': absolute path"),
])
def test_unsafe_tar_members_are_refused_naming_archive_and_member(tmp_path, files, links, message):
    archive = _tar(tmp_path / "sa.tar", files, links)
    with pytest.raises(UnsafeZipError, match="sa.tar: " + message.replace("(", r"\(")):
        safe_untar(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_field_names_follow_the_root():
    assert [field_name(r) for r in ("coco/train2017", "vg/VG_100K_2", "web-celebrity/images")] == [
        "coco_train2017", "vg_vg_100k_2", "web_celebrity_images"]


# --- coverage ----------------------------------------------------------------------------------------------


def test_coverage_counts_the_referenced_images_each_root_holds(tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps([
        {"id": "1", "image": "coco/train2017/1.jpg", "conversations": []},
        {"id": "2", "image": "coco/train2017/2.jpg", "conversations": []},
        {"id": "3", "image": ["vg/VG_100K_2/9.jpg", "coco/train2017/1.jpg"], "conversations": []},
        {"id": "4", "conversations": []},
    ]))
    refs = references_by_root([mix])
    assert refs["coco/train2017"] == {"1.jpg", "2.jpg"} and refs["vg/VG_100K_2"] == {"9.jpg"}
    assert refs["vg/VG_100K"] == set()  # the longest root wins
    folder = tmp_path / "coco/train2017"
    folder.mkdir(parents=True)
    (folder / "1.jpg").write_bytes(b"x")
    cov = coverage("coco/train2017", folder, refs["coco/train2017"])
    assert (cov.referenced, cov.present, cov.missing, cov.share) == (2, 1, ("2.jpg",), 0.5)
    assert coverage("sam/images", tmp_path / "none", set()).share == 1.0


# --- OCR-VQA ---------------------------------------------------------------------------------------------


def test_dataset_json_gives_each_book_its_cover_url(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"1437717772": {"imageURL": "http://ecx.images-amazon.com/images/I/51a.jpg",
                                               "questions": [], "answers": []},
                                "000000000X": {"imageURL": "http://ecx.images-amazon.com/images/I/51b.gif"}}))
    assert read_covers(path) == {"1437717772": "http://ecx.images-amazon.com/images/I/51a.jpg",
                                 "000000000X": "http://ecx.images-amazon.com/images/I/51b.gif"}


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected an object keyed by book id, got a list"),
    ('{"../etc": {"imageURL": "http://x/y.jpg"}}', "book id '../etc' is not a plain file name"),
    ('{"123": {"title": "no url"}}', "book '123' has no imageURL"),
    ('{"123": ', "not a readable JSON file"),
])
def test_an_unreadable_dataset_json_is_named(tmp_path, content, message):
    path = tmp_path / "dataset.json"
    path.write_text(content)
    with pytest.raises(OcrVqaError) as err:
        read_covers(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_crawled_covers_are_saved_as_id_jpg_and_failures_listed(tmp_path):
    samples = tmp_path / "samples.parquet"
    pq.write_table(pa.table({"key": ["111", "222"], "status": ["ok", "failed_download"],
                             "error": [None, "HTTP 404"], "image": [b"\xff\xd8jpeg", None]}), samples)
    saved = save_covers(samples, tmp_path / "covers")
    assert (tmp_path / "covers/111.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert not (tmp_path / "covers/222.jpg").exists()
    assert saved.saved == 1 and saved.failed == {"222": "failed_download: HTTP 404"}
