"""Bounded memory, proven from outside: the crawler CLI (default concurrency, budgets and caps, two
processes) against image webs serving compression bombs, endless bodies, slow drips, pixel bombs of
every format and legitimate images just under the pixel limit, while the test samples the RSS of the
crawler's whole process tree from /proc.

The bound: each crawler process costs at most ``BASELINE`` (the interpreter with numpy, OpenCV,
Pillow, pyarrow, aiohttp and httpx loaded measures ~150-200 MB), and everything a server can make it
hold lives in two shared budgets, ``body_memory`` (512 MiB) and ``decode_memory`` (768 MiB). So
2 x 250 MB + 512 MiB + 768 MiB = 1.84 GB < the 2 GB aim. Without the budgets and the decoded-size
cap (the crawler before them), the same URLs drove the tree to 3.2 GB in 64 s, where the watcher
killed it at ``HARD_LIMIT`` (gzip bombs inflated in one read; 62 MP decodes at ~1 GB each at once).
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from crawl_tree import run_crawl_cli
from vila_assets.core.crawl import SAMPLE_STATUSES, CrawlConfig
from vila_assets.sample_world import hostile_images as hostile
from vila_assets.sample_world.image_web import ImageWeb, extensionless_photo_url

pytestmark = pytest.mark.slow  # ~1.5 min: 100 URLs of bombs and 36-62 MP decodes on two processes

MB = 10**6
PROCESSES = 2
BASELINE = 250 * MB
DEFAULTS = CrawlConfig()
BOUND = PROCESSES * BASELINE + DEFAULTS.body_memory + DEFAULTS.decode_memory
HARD_LIMIT = 3 * 2**30
TIMEOUT = DEFAULTS.timeout  # 20 s per attempt
RETRIES = 1
CAP = DEFAULTS.max_bytes


def _urls(base: str, j: int) -> list[tuple[str, str, str]]:
    """(url, expected status, expected error prefix) served by one web; ``j`` keeps paths unique."""
    decoded = f"too large: decoded body > {CAP} bytes"
    drip = f"timeout after {RETRIES + 1} attempts"
    rows = [(f"{base}/gzip/{kind}/{j}.jpg", "failed_download", decoded)
            for kind in ("bomb", "bomb-chunked", "nested", "endless")]
    rows += [(f"{base}/deflate/{kind}/{j}.jpg", "failed_download", decoded) for kind in ("bomb", "raw")]
    rows += [(f"{base}/endless/{j}-{i}.jpg", "failed_download", f"too large: body > {CAP} bytes") for i in range(2)]
    rows += [(f"{base}/huge/{j}.jpg", "failed_download", "too large: content-length")]
    rows += [(f"{base}/drip/{3 * TIMEOUT:g}/{j}.jpg", "failed_download", drip)]  # a body slower than any deadline
    rows += [(f"{base}/pxbomb/{fmt}?i={j}", "failed_decode", f"decompression bomb: {w}x{h} px")
             for fmt, (_, (w, h)) in hostile.PIXEL_BOMBS.items()]
    if j < 2:  # ten 36-62 MP decodes: the pixel budget holds two or three of them at a time
        rows += [(f"{base}/bigpx/{fmt}/{j}", "ok", "") for fmt in ("png", "webp", "jpg", "gif", "tif")]
    rows += [(extensionless_photo_url(base, "red", "circle", i % 2, 1024, 768, query=f"i={j}-{i}"), "ok", "")
             for i in range(10)]  # two pictures behind ten URLs per host
    return rows


@pytest.fixture(scope="module")
def bombed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bounds")
    # Four hosts (127.0.0.1-4): the default 16 connections per host x 4 = the default 64 in flight.
    webs = [ImageWeb(host=f"127.0.0.{k}") for k in (1, 2, 3, 4)]
    try:
        for web in webs:
            web.start()
        cases = [(web, *row) for j, web in enumerate(webs) for row in _urls(web.base_url, j)]
        for web in webs:
            web.warm(url for w, url, *_ in cases if w is web)
        src = tmp / "urls.jsonl"
        src.write_text("".join(json.dumps({"url": url}) + "\n" for _, url, *_ in cases))
        run = run_crawl_cli([str(src), str(tmp / "out"), "--allow-network", "127.0.0.0/8", "--processes",
                             str(PROCESSES), "--retries", str(RETRIES), "--quiet"], timeout=600, hard_limit=HARD_LIMIT)
        hits = {url: web.hits(url) for web, url, *_ in cases}
        times = {url: web.hit_times(url) for web, url, *_ in cases}
    finally:
        for web in webs:
            web.stop()
    rows = pq.read_table(tmp / "out" / "samples.parquet").to_pylist() if run.rc == 0 else []
    return {"run": run, "cases": cases, "rows": rows, "hits": hits, "times": times}


def test_process_tree_stays_under_the_memory_bound(bombed):
    run = bombed["run"]
    assert not run.killed_for_memory, f"killed at {run.peak_rss / MB:.0f} MB"
    assert run.rc == 0, run.stderr[-3000:]
    assert run.peak_rss < BOUND, f"peak {run.peak_rss / MB:.0f} MB >= bound {BOUND / MB:.0f} MB"
    # The load was real: two 62 MP decodes or a dozen capped bodies at once are far above the baseline.
    assert run.peak_rss > PROCESSES * 150 * MB + 200 * MB, f"peak {run.peak_rss / MB:.0f} MB"
    print(f"\ncrawler tree peak RSS {run.peak_rss / MB:.0f} MB (bound {BOUND / MB:.0f} MB), {run.wall_s:.1f} s")


def test_every_url_ends_once_with_its_expected_status_and_a_reason(bombed):
    rows, cases = bombed["rows"], bombed["cases"]
    assert [r["url"] for r in rows] == [url for _, url, *_ in cases]  # exactly one row per URL, in order
    wrong = [(r["url"], r["status"], r["error"], want, reason) for r, (_, _, want, reason) in zip(rows, cases)
             if r["status"] != want or not (r["error"] or "").startswith(reason)]
    assert not wrong, wrong
    assert all(r["status"] in SAMPLE_STATUSES for r in rows)
    assert all(r["error"] for r in rows if r["status"] != "ok")
    assert Counter(r["status"] for r in rows) == Counter(want for _, _, want, _ in cases)


def test_each_url_was_requested_exactly_as_often_as_the_crawler_says(bombed):
    rows, hits = bombed["rows"], bombed["hits"]
    assert [r["attempts"] for r in rows] == [hits[r["url"]] for r in rows]
    # Everything here is permanent (one attempt) but the drips, which time out on every attempt.
    assert all(r["attempts"] == (RETRIES + 1 if "/drip/" in r["url"] else 1) for r in rows)


def test_the_crawl_ends_within_one_url_deadline_of_its_work(bombed):
    """The slowest URLs (the drips) end at their deadline: (retries + 1) attempts of ``timeout`` plus
    the backoff between them; nothing holds the crawl beyond that and the imaging work."""
    times = [bombed["times"][url] for _, url, *_ in bombed["cases"] if "/drip/" in url]
    deadline = (RETRIES + 1) * TIMEOUT + RETRIES * DEFAULTS.backoff_max
    assert all(len(t) == RETRIES + 1 and t[-1] - t[0] <= deadline - TIMEOUT + 1 for t in times), times
    assert bombed["run"].wall_s < deadline + 120  # + start-up and the 36-62 MP decodes on a shared box


def test_no_crawler_process_outlives_the_crawl(bombed):
    assert bombed["run"].leftovers == []
