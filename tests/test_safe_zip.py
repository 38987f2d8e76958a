"""safe_extract refuses hostile archives (naming zip + entry) and publishes a good one atomically."""

import stat
import zipfile
from pathlib import Path

import pytest

from vila_assets.core.safe_zip import UnsafeZipError, ZipLimits, check_zip, safe_extract


def make_zip(path: Path, entries: list[tuple[str, bytes]], *, compression=zipfile.ZIP_STORED, modes=None) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for i, (name, data) in enumerate(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            mode = (modes or {}).get(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_good_archive_extracts_files_and_dirs(tmp_path):
    z = make_zip(tmp_path / "images.zip", [("a.jpg", b"A"), ("sub/", b""), ("sub/b.jpg", b"BB")])
    summary = safe_extract(z, tmp_path / "out" / "images")
    assert (tmp_path / "out/images/a.jpg").read_bytes() == b"A"
    assert (tmp_path / "out/images/sub/b.jpg").read_bytes() == b"BB"
    assert (summary.files, summary.dirs, summary.bytes) == (2, 1, 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images"]  # no temp dirs left


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../evil.jpg", "'..' component"),
        ("images/../../evil.jpg", "'..' component"),
        ("/etc/evil.jpg", "absolute path"),
        ("C:evil.jpg", "absolute path"),
        ("..\\evil.jpg", "backslash"),
    ],
)
def test_entries_escaping_the_folder_are_rejected_naming_zip_and_entry(tmp_path, name, reason):
    z = make_zip(tmp_path / "images.zip", [("ok.jpg", b"x"), (name, b"evil")])
    with pytest.raises(UnsafeZipError) as err:
        safe_extract(z, tmp_path / "out" / "images")
    msg = str(err.value)
    assert str(z) in msg and repr(name) in msg and reason in msg
    # nothing was written anywhere: not the good entry, not the evil one, no temp dir
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "out" / "evil.jpg").exists()


def test_symlink_entries_are_rejected(tmp_path):
    z = make_zip(tmp_path / "l.zip", [("link.jpg", b"/etc/passwd")], modes={"link.jpg": stat.S_IFLNK | 0o777})
    with pytest.raises(UnsafeZipError, match=r"entry 'link.jpg': is a symlink"):
        safe_extract(z, tmp_path / "out")


def test_duplicate_entries_are_rejected(tmp_path):
    z = tmp_path / "d.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.jpg", b"1")
        with pytest.warns(UserWarning):
            zf.writestr("a.jpg", b"2")
    with pytest.raises(UnsafeZipError, match=r"second entry for 'a.jpg'"):
        check_zip(z)


def test_entry_count_limit(tmp_path):
    z = make_zip(tmp_path / "n.zip", [(f"{i}.jpg", b"x") for i in range(5)])
    with pytest.raises(UnsafeZipError, match=r"5 entries exceed the limit of 4"):
        safe_extract(z, tmp_path / "out", ZipLimits(max_entries=4))
    assert safe_extract(z, tmp_path / "out", ZipLimits(max_entries=5)).files == 5


def test_size_limits_per_entry_and_in_total(tmp_path):
    z = make_zip(tmp_path / "s.zip", [("a.bin", b"x" * 600), ("b.bin", b"y" * 600)])
    with pytest.raises(UnsafeZipError, match=r"entry 'a.bin': 600 bytes uncompressed exceed the per-entry limit of 500"):
        safe_extract(z, tmp_path / "out", ZipLimits(max_entry_bytes=500))
    with pytest.raises(UnsafeZipError, match=r"entry 'b.bin': archive expands past the limit of 1000 bytes"):
        safe_extract(z, tmp_path / "out", ZipLimits(max_total_bytes=1000))


def test_compression_ratio_bomb_is_rejected(tmp_path):
    z = make_zip(tmp_path / "bomb.zip", [("zeros.bin", b"\0" * (2 << 20))], compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(UnsafeZipError, match=r"entry 'zeros.bin': compression ratio \d+:1 exceeds 100:1"):
        safe_extract(z, tmp_path / "out")
    # below ratio_min_bytes small files may compress as well as they like
    small = make_zip(tmp_path / "small.zip", [("zeros.txt", b"\0" * 4096)], compression=zipfile.ZIP_DEFLATED)
    assert safe_extract(small, tmp_path / "out2").bytes == 4096


def test_lying_header_is_caught_while_copying(tmp_path):
    z = make_zip(tmp_path / "lie.zip", [("a.bin", b"0123456789")])
    raw = bytearray(z.read_bytes())
    # shrink the declared size (local header + central directory) below the real 10 bytes
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = raw.find(sig)
        off = 22 if sig == b"PK\x03\x04" else 24
        raw[at + off : at + off + 4] = (4).to_bytes(4, "little")
    z.write_bytes(bytes(raw))
    with pytest.raises(UnsafeZipError, match=r"lie.zip"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_extraction_keeps_the_previous_tree(tmp_path):
    dest = tmp_path / "images"
    safe_extract(make_zip(tmp_path / "v1.zip", [("a.jpg", b"v1")]), dest)
    with pytest.raises(UnsafeZipError):
        safe_extract(make_zip(tmp_path / "v2.zip", [("a.jpg", b"v2"), ("../x", b"")]), dest)
    assert (dest / "a.jpg").read_bytes() == b"v1"
    safe_extract(make_zip(tmp_path / "v3.zip", [("b.jpg", b"v3")]), dest)
    assert sorted(p.name for p in dest.iterdir()) == ["b.jpg"]  # replaced as a whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["images"]


def test_not_a_zip_names_the_file(tmp_path):
    bad = tmp_path / "images.zip"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(UnsafeZipError, match=r"images.zip: not a readable zip archive"):
        safe_extract(bad, tmp_path / "out")
