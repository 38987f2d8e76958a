"""Our crawler vs img2dataset 1.47.0 on the same local hostile image web, alternating runs.

    .venv/bin/python bench/crawl_vs_img2dataset.py [--urls 2000] [--rounds 2]

img2dataset is installed by this script into bench/.venv-img2dataset (pip, git-ignored). Both tools run
as subprocesses (ours through the CLI) against one ImageWeb on 127.0.0.1 with 20-40 ms latency per path;
all image bytes are rendered before timing, so the server only copies memory. CPU is the children's
CPU (resource.getrusage(RUSAGE_CHILDREN) deltas around each run); peak RSS is sampled from /proc over
the tool's whole process tree. The last line is ``crawl_speedup_vs_img2dataset: X.XX`` (ours URLs/s ÷ theirs).
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vila_assets.sample_world.image_web import ImageWeb, extensionless_photo_url, fault_url  # noqa: E402
from vila_assets.sample_world.images import COLORS, SHAPES, caption  # noqa: E402

IMG2DATASET = "img2dataset==1.47.0"
VENV = ROOT / "bench" / ".venv-img2dataset"
OUT = ROOT / "bench" / "out"
# 0.3 - 3 MP, 1.2 MP on average over the photo mix below.
SIZES = [(640, 480), (800, 600), (1024, 768), (1280, 960), (1600, 1200), (2000, 1500)]
SIZE_WEIGHTS = [3, 3, 3, 3, 2, 1]


def ensure_img2dataset() -> Path:
    exe = VENV / "bin" / "img2dataset"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", IMG2DATASET], check=True)
    return exe


def build_urls(base: str, n: int, seed: int = 0) -> list[dict]:
    """~90 % photos (144 distinct pictures behind 1,800 distinct URLs), ~10 % permanent failures."""
    rng = random.Random(seed)
    colors, rows = sorted(COLORS), []
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            url = fault_url(base, "status", f"gone-{i}", 404)
        elif r < 0.06:
            url = fault_url(base, "status", f"gone-{i}", 410)
        elif r < 0.08:
            url = fault_url(base, "garbage", f"g{i % 20}")
        elif r < 0.10:
            url = fault_url(base, "html", f"h{i % 20}")
        else:
            w, h = rng.choices(SIZES, SIZE_WEIGHTS)[0]
            color, shape = rng.choice(colors), rng.choice(SHAPES)
            url = extensionless_photo_url(base, color, shape, rng.randrange(2), w, h, query=f"i={i}")
            rows.append({"key": f"{i:06d}", "url": url, "caption": caption(color, shape)})
            continue
        rows.append({"key": f"{i:06d}", "url": url, "caption": "a broken link"})
    return rows


class TreeRss:
    """Peak of the summed RSS of a process and all its descendants, sampled every 100 ms from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
            except (OSError, IndexError, ValueError):
                continue
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(parents.get(p, []))
        return out

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            total = 0
            for p in self._tree():
                try:
                    total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
                except (OSError, IndexError, ValueError):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_tool(cmd: list[str], log: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        rss = TreeRss(proc.pid)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    peak = rss.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"{cmd[0]} failed (rc={rc}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / 2**20}


def ours(input_path: Path, out: Path, size: int, quality: int, extra: list[str] = ()) -> tuple[list[str], callable]:
    cmd = [sys.executable, "-m", "vila_assets.crawl_cli", str(input_path), str(out),
           "--allow-network", "127.0.0.0/8", "--image-size", str(size), "--quality", str(quality), "--quiet",
           *extra]

    def successes() -> int:
        status = pq.read_table(out / "samples.parquet", columns=["status"]).column("status").to_pylist()
        return status.count("ok")

    return cmd, successes


def theirs(exe: Path, input_path: Path, out: Path, size: int, quality: int) -> tuple[list[str], callable]:
    cmd = [str(exe), "--url_list", str(input_path), "--input_format", "parquet", "--url_col", "url",
           "--caption_col", "caption", "--output_format", "parquet", "--output_folder", str(out),
           "--processes_count", "2", "--thread_count", "64", "--number_sample_per_shard", "500",
           "--image_size", str(size), "--resize_mode", "keep_ratio", "--resize_only_if_bigger", "True",
           "--encode_format", "jpg", "--encode_quality", str(quality), "--timeout", "20", "--retries", "0",
           "--enable_wandb", "False"]

    def successes() -> int:
        n = 0
        for f in glob.glob(str(out / "*.parquet")):
            n += pq.read_table(f, columns=["status"]).column("status").to_pylist().count("success")
        return n

    return cmd, successes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--urls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2, help="runs per tool, alternating ours/theirs")
    ap.add_argument("--image-size", type=int, default=384)
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--ours-args", default="", help="extra crawler CLI options, e.g. '--worker-kind thread'")
    args = ap.parse_args()

    exe = ensure_img2dataset()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    results: dict[str, list[dict]] = {"ours": [], "img2dataset": []}
    with ImageWeb(latency_s=(0.02, 0.04)) as web:
        rows = build_urls(web.base_url, args.urls)
        t0 = time.perf_counter()
        web.warm(r["url"] for r in rows)
        print(f"pre-rendered {len(rows)} URLs in {time.perf_counter() - t0:.1f}s", flush=True)
        input_path = OUT / "urls.parquet"
        pq.write_table(pa.Table.from_pylist(rows), input_path)
        for rnd in range(args.rounds):
            for tool in ("ours", "img2dataset"):
                out = OUT / f"{tool}-{rnd}"
                if tool == "ours":
                    cmd, count = ours(input_path, out, args.image_size, args.quality, args.ours_args.split())
                else:
                    cmd, count = theirs(exe, input_path, out, args.image_size, args.quality)
                m = run_tool(cmd, OUT / f"{tool}-{rnd}.log")
                m["ok"] = count()
                m["urls_per_s"] = len(rows) / m["wall_s"]
                m["cpu_ms_per_ok"] = 1000 * m["cpu_s"] / max(1, m["ok"])
                results[tool].append(m)
                print(f"round {rnd} {tool:12s} {m['urls_per_s']:7.1f} URLs/s  wall {m['wall_s']:6.1f}s  "
                      f"cpu {m['cpu_s']:6.1f}s  {m['cpu_ms_per_ok']:5.1f} CPU-ms/ok  ok {m['ok']}  "
                      f"peak RSS {m['peak_rss_mb']:.0f} MB", flush=True)
    print()
    print(f"{'tool':12s} {'URLs/s':>8s} {'CPU-ms/ok':>10s} {'peak RSS MB':>12s} {'ok':>6s}  (mean of {args.rounds}; N={len(rows)})")
    mean = {}
    for tool, ms in results.items():
        mean[tool] = {k: statistics.mean(m[k] for m in ms) for k in ms[0]}
        print(f"{tool:12s} {mean[tool]['urls_per_s']:8.1f} {mean[tool]['cpu_ms_per_ok']:10.1f} "
              f"{max(m['peak_rss_mb'] for m in ms):12.0f} {mean[tool]['ok']:6.0f}")
    print(f"crawl_speedup_vs_img2dataset: {mean['ours']['urls_per_s'] / mean['img2dataset']['urls_per_s']:.2f}")


if __name__ == "__main__":
    main()
