"""Paths from data: a name that comes from a dataset (archive member, shard stem, partition key, book id)
never becomes a path outside its folder; archives with links, devices, duplicates or bombs are refused
with a reason; and the platform never unpickles anything it did not write itself."""

from __future__ import annotations

import ast
import io
import json
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vila_assets.core import coyo, mmc4
from vila_assets.core.ocr_vqa import OcrVqaError, read_covers
from vila_assets.core.safe_tar import safe_untar
from vila_assets.core.safe_zip import UnsafeZipError, ZipLimits, safe_extract
from vila_assets.core.vila_format import write_pickle_shard

FAST = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
REPO = Path(__file__).resolve().parents[1]

component = st.sampled_from(["..", ".", "", "a", "b.jpg", "C:", "c:\\x", "..\\..", "x\x00y", "~", "\u2025", "%2e%2e"])
member_name = (st.lists(component, min_size=1, max_size=4).map("/".join)
               | st.lists(component, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
               | st.text(max_size=12))


def _outside(root: Path, allowed: Path, archive: Path) -> list[Path]:
    """Everything under ``root`` that is neither ``archive`` nor inside ``allowed``."""
    return [p for p in root.rglob("*") if p != archive and allowed not in (p, *p.parents)]


@FAST
@given(names=st.lists(member_name, min_size=1, max_size=4))
def test_zip_members_never_land_outside_the_destination(names):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        archive = root / "images.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for name in names:
                try:
                    zf.writestr(name, b"x")
                except (ValueError, OSError, IndexError):
                    continue  # names zipfile itself cannot store
        dest = root / "out" / "images"
        try:
            safe_extract(archive, dest)
        except UnsafeZipError as exc:
            assert str(exc).startswith(str(archive))
            assert not dest.exists()
        assert _outside(root, dest, archive) == [] or _outside(root, dest, archive) == [root / "out"]


TAR_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE,
             "fifo": tarfile.FIFOTYPE}


@FAST
@given(members=st.lists(st.tuples(member_name, st.sampled_from(sorted(TAR_TYPES)),
                                  st.sampled_from(["../../etc/passwd", "/etc/passwd", "a"])), min_size=1, max_size=4))
def test_tar_members_never_land_outside_the_destination(members):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        archive = root / "images.tar"
        with tarfile.open(archive, "w") as tar:
            for name, kind, target in members:
                info = tarfile.TarInfo(name)
                info.type = TAR_TYPES[kind]
                info.linkname = target if kind in ("symlink", "hardlink") else ""
                data = b"x" if kind == "file" else b""
                info.size = len(data)
                try:
                    tar.addfile(info, io.BytesIO(data))
                except (ValueError, UnicodeError):
                    continue
        dest = root / "out" / "images"
        try:
            safe_untar(archive, dest)
        except UnsafeZipError as exc:
            assert str(exc).startswith(str(archive))
            assert not dest.exists()
        else:
            kinds = {kind for _, kind, _ in members}
            assert kinds <= {"file", "dir"}  # links and devices are never extracted
            assert not any(p.is_symlink() for p in dest.rglob("*"))
        assert _outside(root, dest, archive) in ([], [root / "out"])


def test_zip_bombs_are_refused_before_anything_is_written(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (4 << 20))  # ~1000:1
    with pytest.raises(UnsafeZipError, match=r"bomb.zip.*zeros.bin") as err:
        safe_extract(archive, tmp_path / "out")
    assert "ratio" in str(err.value) or "compress" in str(err.value)
    with pytest.raises(UnsafeZipError, match="limit"):
        safe_extract(archive, tmp_path / "out", ZipLimits(max_entry_bytes=1 << 20, max_ratio=1e9))
    assert list(tmp_path.iterdir()) == [archive]


def test_tar_declared_sizes_over_the_limits_are_refused(tmp_path):
    archive = tmp_path / "big.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("a.jpg", "b.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 600
            tar.addfile(info, io.BytesIO(b"\0" * 600))
    with pytest.raises(UnsafeZipError, match="per-file limit"):
        safe_untar(archive, tmp_path / "out", ZipLimits(max_entry_bytes=500))
    with pytest.raises(UnsafeZipError, match="in all"):
        safe_untar(archive, tmp_path / "out", ZipLimits(max_total_bytes=1000))
    assert list(tmp_path.iterdir()) == [archive]


@FAST
@given(stem=member_name | st.sampled_from(["", ".", "..", "../x", "a/../../x", "\\..\\x", "/abs", "ok_00001"]))
def test_shard_stems_never_escape_the_shard_folder(stem):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "shards"
        try:
            pkl = write_pickle_shard(folder, stem, [{"a": 1}])
        except ValueError:
            assert not folder.exists() or not any(folder.iterdir())
            return
        assert pkl.parent == folder and not pkl.name.startswith(".")
        assert sorted(p.name for p in folder.iterdir()) == sorted([f"{stem}.pkl", f"{stem}.count"])
        assert all(p.parent == folder or p.parent.name == ".shards.tmp" for p in Path(d).rglob("*") if p.is_file())


@FAST
@given(key=st.text(max_size=8) | st.sampled_from(["../00001", "00001/..", "/00001", "0x1", "-1", " 1"]))
def test_partition_keys_are_numbers_or_refused(key):
    try:
        index = mmc4.shard_index(key)
    except ValueError:
        pass
    else:
        assert 0 <= index and str(index) in mmc4.partition_key(index)
        assert "/" not in mmc4.partition_key(index) and "." not in mmc4.partition_key(index)
    try:
        name = coyo.shard_filename(key)
    except ValueError:
        return
    assert "/" not in name.removeprefix("data/") and ".." not in name


@pytest.mark.parametrize("book", ["../x", "a/b", "/etc/passwd", "..", ".", "a b", "a\x00", "x" * 65, ""])
def test_ocr_vqa_book_ids_that_are_not_plain_names_are_refused(tmp_path, book):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"0001": {"imageURL": "http://x/a.jpg"}, book: {"imageURL": "http://x/b.jpg"}}))
    with pytest.raises(OcrVqaError, match="is not a plain file name") as err:
        read_covers(path)
    assert str(err.value).startswith(str(path))


# --- pickles -------------------------------------------------------------------------------------------------

# Every place the platform unpickles, and why the bytes are its own. A new call site fails the test until it
# is listed here with its reason (and SECURITY.md is updated).
ALLOWED_UNPICKLES = {
    ("vila_assets/core/vila_format.py", "validate_shard_dir"): "a shard folder the platform wrote (loader check)",
    ("vila_assets/core/vila_format.py", "iter_shard_records"): "records of a shard folder the platform wrote",
    ("vila_assets/core/mmc4_merge.py", "_load_pair"): "an MMC4 pair this platform published (inspection)",
    ("vila_assets/core/coyo_split.py", "_load_part"): "a COYO part this platform wrote (split contract)",
    ("vila_assets/core/vflan.py", "_read_spill"): "spill files the VFLAN chunk build wrote in its work dir",
    ("vila_assets/assets/vflan/assets.py", "_check_loader_contract"): "VFLAN chunks this platform published",
    ("vila_assets/core/crawl/parts.py", "_child"): "arguments the crawler pipes to its own child process",
}
UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("pd", "read_pickle"),
              ("pandas", "read_pickle"), ("torch", "load"), ("joblib", "load"), ("dill", "load"), ("dill", "loads"),
              ("cloudpickle", "load"), ("cloudpickle", "loads")}


def _unpickle_sites() -> list[tuple[str, str, int]]:
    sites = []
    for path in sorted((REPO / "vila_assets").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(REPO).as_posix()

        def visit(node, func):
            for child in ast.iter_child_nodes(node):
                inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
                if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) \
                        and (child.value.id, child.attr) in UNPICKLERS:
                    sites.append((rel, func, child.lineno))
                elif isinstance(child, ast.Name) and child.id in ("Unpickler", "read_pickle"):
                    sites.append((rel, func, child.lineno))
                elif isinstance(child, ast.ImportFrom) and child.module in ("pickle", "dill", "cloudpickle") \
                        and any(a.name in ("load", "loads", "Unpickler") for a in child.names):
                    sites.append((rel, func, child.lineno))
                visit(child, inner if not isinstance(child, ast.ClassDef) else func)

        visit(tree, "<module>")
    return sites


def test_the_platform_only_unpickles_files_it_wrote_itself():
    sites = _unpickle_sites()
    unlisted = [s for s in sites if (s[0], s[1]) not in ALLOWED_UNPICKLES]
    assert unlisted == [], f"new unpickling call sites (list them with their reason): {unlisted}"
    assert {(s[0], s[1]) for s in sites} == set(ALLOWED_UNPICKLES)  # the list has no stale entries


def test_numpy_loads_never_allow_pickles():
    for path in (REPO / "vila_assets").rglob("*.py"):
        assert "allow_pickle=True" not in path.read_text(), path


@pytest.mark.parametrize("stem", ["", "\x00", "a\x00b"])
def test_empty_or_nul_shard_stems_are_refused(tmp_path, stem):
    """Regression: an empty stem wrote a hidden ``.pkl``/``.count`` pair that VILA's loader still lists."""
    with pytest.raises(ValueError, match="bad shard stem"):
        write_pickle_shard(tmp_path / "shards", stem, [{"a": 1}])
    assert not (tmp_path / "shards").exists() or list((tmp_path / "shards").iterdir()) == []
