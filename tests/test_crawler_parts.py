"""One crawl over several processes: same bytes as one process, blocks dealt once, failures surface."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_crawler_resume import _urls
from vila_assets.core.crawl import CrawlConfig, crawl
from vila_assets.core.crawl.checkpoint import CHECKPOINT_DIR, Checkpoint
from vila_assets.core.crawl.crawler import MIN_ROWS_PER_PROCESS, plan_parts
from vila_assets.core.crawl.parts import PART_BLOCK, BlockDealer, RowTally, available_cpus, run_parts
from vila_assets.core.crawl.reader import InputRow
from vila_assets.core.crawl.writer import CHUNK_SCHEMA, write_table
from vila_assets.sample_world.image_web import ImageWeb


def test_output_bytes_do_not_depend_on_processes_event_loop_or_http_layer(tmp_path):
    with ImageWeb(latency_s=0.005) as web:
        rows = _urls(web.base_url, 260)  # 5 blocks: with 3 processes every one gets work
        src = tmp_path / "urls.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)
        base = dict(allow_networks=("127.0.0.0/8",), concurrency=6, per_host=6, checkpoint_rows=16)
        layouts = {
            "one-asyncio-httpx": CrawlConfig(**base, processes=1, event_loop="asyncio", http_backend="httpx"),
            "two-uvloop-aiohttp": CrawlConfig(**base, processes=2),
            "three-uvloop-aiohttp": CrawlConfig(**base, processes=3, workers=1),
        }
        out = {}
        for name, config in layouts.items():
            summary = crawl(src, tmp_path / name, config)
            assert summary.total == len(rows) and sum(summary.counts.values()) == len(rows)
            out[name] = (tmp_path / name / "samples.parquet").read_bytes()
    assert summary.counts["ok"] > 200 and summary.counts["failed_download"] > 20
    assert out["one-asyncio-httpx"] == out["two-uvloop-aiohttp"] == out["three-uvloop-aiohttp"]
    keys = pq.read_table(tmp_path / "two-uvloop-aiohttp" / "samples.parquet", columns=["key"]).column("key")
    assert keys.to_pylist() == [r["key"] for r in rows]


def _rows(n: int):
    return (InputRow(i, str(i), f"http://x/{i}", None) for i in range(n))


def test_block_dealer_gives_every_row_to_exactly_one_process():
    counter = multiprocessing.get_context("spawn").Value("q", 0)
    n = 10 * PART_BLOCK + 7
    a, b = BlockDealer(counter).mine(_rows(n)), BlockDealer(counter).mine(_rows(n))
    got = {"a": [], "b": []}
    # Uneven speeds: "a" takes three rows for each of "b"'s, as a process that started earlier would.
    for name, it in [("a", a), ("a", a), ("a", a), ("b", b)] * n:
        row = next(it, None)
        if row is not None:
            got[name].append(row.index)
    assert sorted(got["a"] + got["b"]) == list(range(n))
    assert len(got["a"]) > len(got["b"]) > 0
    assert all(indices == sorted(indices) for indices in got.values())  # input order within a process
    blocks_a, blocks_b = ({i // PART_BLOCK for i in got[k]} for k in "ab")
    assert blocks_a.isdisjoint(blocks_b)  # whole blocks: a block never splits across processes


def test_plan_parts():
    assert plan_parts(CrawlConfig(processes=3), 10_000) == 3
    assert plan_parts(CrawlConfig(processes=3), 2) == 2  # never more processes than rows
    assert plan_parts(CrawlConfig(), MIN_ROWS_PER_PROCESS - 1) == 1  # not worth a process start
    assert 1 <= plan_parts(CrawlConfig(), 10**6) == available_cpus() <= (os.cpu_count() or 1)


def _failing_child(part, tally, on_rows, dealer, message):
    raise ValueError(message)


def test_a_failing_process_stops_the_others_and_names_the_error():
    seen_stop = threading.Event()

    def local(own, on_rows, stop, dealer):
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        if stop.is_set():
            seen_stop.set()

    with pytest.raises(RuntimeError, match=r"crawler process 1 of 2 failed:(.|\n)*ValueError: disk on fire"):
        run_parts(local, _failing_child, ("disk on fire",), 2, RowTally(), lambda: None)
    assert seen_stop.is_set()


def _chunk_row(i: int, status: str = "ok") -> dict:
    row = {name: None for name in CHUNK_SCHEMA.names}
    row.update(index=i, key=f"k{i}", url=f"http://x/{i}", status=status, attempts=1)
    return row


def test_assembly_keeps_the_first_copy_of_a_row_finished_twice(tmp_path):
    ckpt = Checkpoint(tmp_path, {"x": 1}, 3)
    d = tmp_path / CHECKPOINT_DIR
    write_table(d / "chunk-000-000000.parquet", [_chunk_row(0), _chunk_row(1, "ok")], CHUNK_SCHEMA)
    write_table(d / "chunk-001-000000.parquet", [_chunk_row(1, "blocked"), _chunk_row(2)], CHUNK_SCHEMA)
    counts = ckpt.assemble(tmp_path / "samples.parquet")
    assert counts == {"ok": 3}
    assert pq.read_table(tmp_path / "samples.parquet").column("status").to_pylist() == ["ok", "ok", "ok"]


def test_assembly_names_missing_rows(tmp_path):
    ckpt = Checkpoint(tmp_path, {"x": 1}, 4)
    write_table(tmp_path / CHECKPOINT_DIR / "chunk-000-000000.parquet", [_chunk_row(0), _chunk_row(3)], CHUNK_SCHEMA)
    with pytest.raises(RuntimeError, match=r"rows \[1, 2\] of 0\.\.3 are missing"):
        ckpt.assemble(tmp_path / "samples.parquet")
    assert not (tmp_path / "samples.parquet").exists()


def test_error_reasons_stay_bounded_over_many_hosts():
    from vila_assets.core.crawl.parts import MAX_TRACKED_ERRORS, OTHER_ERRORS

    tally = RowTally()
    for i in range(MAX_TRACKED_ERRORS + 500):
        tally.add("failed_download", f"dns: cannot resolve host{i}.example", 0)
    tally.add("failed_download", "dns: cannot resolve host0.example", 0)
    assert len(tally.errors) == MAX_TRACKED_ERRORS + 1
    assert tally.errors[OTHER_ERRORS] == 500 and tally.errors["dns: cannot resolve host0.example"] == 2
    assert tally.done == MAX_TRACKED_ERRORS + 501 and len(tally.final().errors) == 50
