"""Soak: the crawler CLI against the fault web for many URLs; memory over time, statuses, throughput.

    .venv/bin/python bench/crawl_soak.py [--urls 100000] [--hosts 4] [--timeout 5]

On demand, not in CI (100k URLs take tens of minutes on 2 cores). Four image webs on 127.0.0.1-4
(so the default 16 connections per host add up to the default 64 in flight) serve a mix of every
fault class: photos, 404/410, 503 and 5xx bursts, 429, resets mid-body, truncated and endless bodies,
gzip bombs, pixel bombs, unusual image modes, redirect chains and loops, redirects into private space,
opt-outs, HTML and garbage, slow drips, DNS failures. Every URL has an expected status; stateful paths
are unique per URL, so "attempts = requests the server saw" is checked for each of them.

The crawler runs with its defaults (two processes on this box) except ``--allow-network``,
``--timeout`` and ``--backoff-max``; its process tree's RSS is sampled every 0.5 s from /proc.
Output: a memory timeline, status counts, mismatches, throughput, and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from vila_assets.sample_world import hostile_images as hostile  # noqa: E402
from vila_assets.sample_world.image_web import ImageWeb, extensionless_photo_url, fault_url  # noqa: E402
from crawl_tree import run_crawl_cli  # noqa: E402  (the tests' watcher: RSS of the CLI's whole session)

OUT = ROOT / "bench" / "out" / "soak"


def _mode_case(base: str, i: int) -> tuple[str, str]:
    sample = hostile.MODE_SAMPLES[i % len(hostile.MODE_SAMPLES)]
    return f"{base}/mode/{sample.name}?i={i}", "failed_decode" if isinstance(sample.expected, str) else "ok"


# (weight, url builder (base, i) -> (url, expected status)); stateful paths carry i, so they are unique.
MIX = [
    (700, lambda b, i: (extensionless_photo_url(b, "red", "circle", i % 4, 480, 360, query=f"i={i}"), "ok")),
    (40, lambda b, i: (fault_url(b, "status", f"s{i}", 404), "failed_download")),
    (10, lambda b, i: (fault_url(b, "status", f"s{i}", 410), "failed_download")),
    (30, lambda b, i: (fault_url(b, "flaky", f"f{i}", 2), "ok")),
    (10, lambda b, i: (fault_url(b, "ratelimit", f"r{i}", 1), "ok")),
    (20, lambda b, i: (f"{b}/burst/2/502/b{i}.jpg", "ok")),
    (20, lambda b, i: (f"{b}/reset/1/x{i}.jpg", "ok")),
    (10, lambda b, i: (fault_url(b, "truncated", f"t{i}"), "failed_download")),
    (5, lambda b, i: (fault_url(b, "endless", f"e{i}"), "failed_download")),
    (5, lambda b, i: (f"{b}/gzip/bomb/g{i}.jpg", "failed_download")),
    (5, lambda b, i: (f"{b}/gzip/endless/g{i}.jpg", "failed_download")),
    (10, lambda b, i: (f"{b}/pxbomb/{sorted(hostile.PIXEL_BOMBS)[i % 6]}?i={i}", "failed_decode")),
    (20, _mode_case),
    (20, lambda b, i: (fault_url(b, "redirect", f"p/blue/square/{i % 4}/480x360?i={i}", 2), "ok")),
    (5, lambda b, i: (fault_url(b, "loop", f"l{i}"), "failed_download")),
    (5, lambda b, i: (fault_url(b, "goto", "metadata") + f"?i={i}", "blocked")),
    (10, lambda b, i: (fault_url(b, "robots", f"o{i}", "noai"), "opted_out")),
    (20, lambda b, i: (fault_url(b, "html", f"h{i}"), "failed_decode")),
    (10, lambda b, i: (fault_url(b, "garbage", f"x{i}"), "failed_decode")),
    (10, lambda b, i: (f"{b}/gzip/photo/z{i}.jpg", "ok")),
    (2, lambda b, i: (fault_url(b, "drip", f"d{i}", 60), "failed_download")),
    (3, lambda b, i: (f"http://h{i}.nonexistent.invalid/x.jpg", "failed_download")),
]


def build_urls(bases: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    builders, weights = zip(*[(b, w) for w, b in MIX])
    return [rng.choices(builders, weights)[0](bases[i % len(bases)], i) for i in range(n)]


def run(args: argparse.Namespace) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    webs = [ImageWeb(host=f"127.0.0.{k + 1}") for k in range(args.hosts)]
    for web in webs:
        web.start()
    try:
        cases = build_urls([w.base_url for w in webs], args.urls)
        t0 = time.perf_counter()
        for web in webs:
            web.warm(url for url, _ in cases)
        print(f"{len(cases)} URLs, bytes rendered in {time.perf_counter() - t0:.1f}s", flush=True)
        src = OUT / "urls.parquet"
        pq.write_table(pa.Table.from_pylist([{"url": u, "key": f"{i:07d}"} for i, (u, _) in enumerate(cases)]), src)
        out = OUT / "crawl"
        shutil.rmtree(out, ignore_errors=True)
        flags = ["--allow-network", "127.0.0.0/8", "--timeout", str(args.timeout), "--backoff-max", "2", "--quiet"]
        crawled = run_crawl_cli([str(src), str(out), *flags], timeout=24 * 3600, hard_limit=8 * 2**30, interval=0.5,
                             cwd=str(ROOT))
        hits = {url: sum(w.hits(url) for w in webs) for url, _ in cases}
    finally:
        for web in webs:
            web.stop()
    if crawled.rc != 0:
        raise SystemExit(f"crawler failed (rc={crawled.rc}): {crawled.stderr[-2000:]}")
    rows = pq.read_table(out / "samples.parquet", columns=["url", "status", "error", "attempts"]).to_pylist()
    summary = json.loads(crawled.stdout.strip().splitlines()[-1])
    return report(cases, rows, hits, crawled.samples, crawled.wall_s, len(crawled.leftovers), summary)


def report(cases, rows, hits, samples, wall, leftovers, summary) -> dict:
    assert [r["url"] for r in rows] == [u for u, _ in cases], "not one row per URL in input order"
    mismatched = Counter((want, r["status"], (r["error"] or "")[:40]) for r, (_, want) in zip(rows, cases)
                         if r["status"] != want)
    local = [r for r in rows if "127.0.0." in r["url"]]
    attempts_off = sum(1 for r in local if r["attempts"] != hits[r["url"]])
    peak = max(rss for _, rss in samples)
    print("\nmemory over time (crawler process tree):")
    step = max(1, len(samples) // 20)
    for t, rss in samples[::step]:
        print(f"  {t:7.1f} s  {rss / 1e6:7.0f} MB")
    print(f"peak {peak / 1e6:.0f} MB\n\nstatuses: {dict(Counter(r['status'] for r in rows))}")
    print(f"unexpected statuses: {sum(mismatched.values())} {dict(mismatched.most_common(8))}")
    print(f"attempts != server requests: {attempts_off} of {len(local)}; processes left behind: {leftovers}")
    print(f"throughput: {len(rows) / wall:.1f} URLs/s over {wall:.0f} s")
    result = {"urls": len(rows), "wall_s": round(wall, 1), "urls_per_s": round(len(rows) / wall, 1),
              "peak_rss_mb": round(peak / 1e6), "statuses": summary["counts"], "unexpected": sum(mismatched.values()),
              "attempts_mismatch": attempts_off, "leftover_processes": leftovers}
    print("crawl_soak: " + json.dumps(result))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--urls", type=int, default=100_000)
    ap.add_argument("--hosts", type=int, default=4, help="image webs on 127.0.0.1..N")
    ap.add_argument("--timeout", type=float, default=5.0, help="crawler --timeout (per attempt)")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
