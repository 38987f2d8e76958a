import os

import pytest

from vila_assets.core.atomic import atomic_open, atomic_write_bytes


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "out.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert os.listdir(target.parent) == ["out.bin"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write(b"partial")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_open_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "x", "rb"):
            pass


def test_fresh_temp_dir_clears_what_a_killed_install_of_the_same_folder_left(tmp_path):
    from vila_assets.core.atomic import fresh_temp_dir, replace_dir

    dest = tmp_path / "train2017"
    stale_tmp = tmp_path / ".train2017.tmp-abc123"
    (stale_tmp / ".archive-0.tmp-x" / "train2017").mkdir(parents=True)
    (stale_tmp / ".archive-0.tmp-x" / "train2017" / "1.jpg").write_bytes(b"half")
    stale_old = tmp_path / ".train2017.old-def456"
    stale_old.mkdir()
    other = tmp_path / ".val2017.tmp-ghi789"  # another folder's work: left alone
    other.mkdir()
    new = fresh_temp_dir(dest)
    assert new.parent == tmp_path and new.name.startswith(".train2017.tmp-") and not any(new.iterdir())
    assert not stale_tmp.exists() and not stale_old.exists() and other.is_dir()
    assert new.stat().st_mode & 0o777 == 0o755
    (new / "a.jpg").write_bytes(b"x")
    replace_dir(new, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".val2017.tmp-ghi789", "train2017"]
