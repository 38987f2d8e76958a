"""Crash safety: kill -9 a crawl mid-run, rerun, and get the same bytes as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vila_assets.core.crawl import CrawlConfig, crawl
from vila_assets.sample_world.image_web import ImageWeb, fault_url, photo_url
from vila_assets.sample_world.images import COLORS, SHAPES

ROOT = Path(__file__).resolve().parents[1]


def _urls(base: str, n: int) -> list[dict]:
    # Only routes whose answer does not depend on history (no flaky/429), so both runs see the same web.
    colors = sorted(COLORS)
    rows = []
    for i in range(n):
        if i % 9 == 4:
            url = fault_url(base, "status", f"r{i}", 404)
        elif i % 13 == 7:
            url = fault_url(base, "html", f"r{i}")
        else:
            url = photo_url(base, colors[i % 4], SHAPES[i % 3], i % 5, 480 + 32 * (i % 4), 360)
        rows.append({"key": f"k{i:04d}", "url": url, "caption": f"caption {i}"})
    return rows


def _cli(src: Path, out: Path, processes: int = 1) -> list[str]:
    return [sys.executable, "-m", "vila_assets.crawl_cli", str(src), str(out), "--allow-network", "127.0.0.0/8",
            "--checkpoint-rows", "5", "--checkpoint-seconds", "0.2", "--concurrency", "4", "--per-host", "4",
            "--processes", str(processes), "--quiet"]


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie no longer runs (nobody may reap it in a container)


@pytest.mark.parametrize("processes", [1, 2])
def test_crawler_resumes_after_sigkill_with_byte_identical_output(tmp_path, processes):
    with ImageWeb(latency_s=0.02) as web:
        rows = _urls(web.base_url, 600)
        web.warm(r["url"] for r in rows)
        src = tmp_path / "urls.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)

        clean = tmp_path / "clean"
        subprocess.run(_cli(src, clean), check=True, cwd=ROOT, timeout=120)

        killed = tmp_path / "killed"
        for attempt in range(3):  # kill it several times, resuming each time
            proc = subprocess.Popen(_cli(src, killed, processes), cwd=ROOT)
            ckpt = killed / ".checkpoint"
            before = len(list(ckpt.glob("chunk-*.parquet")))
            deadline = time.monotonic() + 60
            # With 2 processes, wait until the spawned one has written a chunk too (it is killed mid-work).
            while time.monotonic() < deadline and (
                len(list(ckpt.glob("chunk-*.parquet"))) < before + 3
                or (processes == 2 and not list(ckpt.glob("chunk-001-*.parquet")))
            ):
                time.sleep(0.02)
            kids = _children(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            assert not (killed / "samples.parquet").exists(), "killed too late to test resume"
            if processes == 2:
                # It must die with the parent, not finish its blocks (seconds of work left) into the folder
                # the next run resumes from.
                assert kids, "the second crawler process was not running"
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and any(_alive(k) for k in kids):
                    time.sleep(0.05)
                assert not any(_alive(k) for k in kids), "a crawler process outlived its killed parent"

        summary = crawl(src, killed, CrawlConfig(allow_networks=("127.0.0.0/8",), concurrency=4, per_host=4,
                                                 processes=processes))

    assert 0 < summary.resumed < len(rows)
    assert summary.total == len(rows)
    assert (killed / "samples.parquet").read_bytes() == (clean / "samples.parquet").read_bytes()
    assert not ckpt.exists()


def test_crawler_discards_a_checkpoint_made_for_another_config(tmp_path):
    with ImageWeb() as web:
        rows = _urls(web.base_url, 12)
        src = tmp_path / "urls.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)
        cfg = CrawlConfig(allow_networks=("127.0.0.0/8",), checkpoint_rows=1)
        crawl(src, tmp_path / "a", cfg)
        # Fake an interrupted run at another image size: its rows must not leak into this one.
        (tmp_path / "b" / ".checkpoint").mkdir(parents=True)
        (tmp_path / "b" / ".checkpoint" / "manifest.json").write_text('{"other": 1}')
        summary = crawl(src, tmp_path / "b", cfg)
    assert summary.resumed == 0
    assert (tmp_path / "a" / "samples.parquet").read_bytes() == (tmp_path / "b" / "samples.parquet").read_bytes()
