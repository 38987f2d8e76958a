"""FLAN sampling memory: our streaming sampler under both data policies vs VILA's load-everything + linspace.

Generates synthetic FLAN (14 ``*_data`` folders of ``part.N.parquet``, the real columns) with N and 10·N
rows (pyarrow, one part at a time, so generation itself is bounded), then samples ``--sample`` rows
from each three ways, each in its own subprocess that reports its wall time and peak RSS (``VmHWM``):
``curated`` (seeded hash), ``vila`` (VILA's ``torch.linspace`` rows, streamed) and ``reference`` (VILA's
``preprocess_flan.py``: every string in two lists, then ``torch.linspace``). At N it also checks that
``vila`` wrote the reference's records. Last lines: ``flan_rss_growth_10x[<policy>]`` = that policy's
peak RSS at 10·N ÷ at N (target < 1.10 each) and ``flan_rss_growth_10x`` = the larger of the two.

    .venv/bin/python bench/flan_sample.py --n 2000000 --sample 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

FOLDERS = (
    "cot_fsopt_data", "cot_zsopt_data", "dialog_fsopt_data", "dialog_zsopt_data", "flan_fsnoopt_data",
    "flan_fsopt_data", "flan_zsnoopt_data", "flan_zsopt_data", "niv2_fsopt_data", "niv2_zsopt_data",
    "t0_fsnoopt_data", "t0_fsopt_data", "t0_zsnoopt_data", "t0_zsopt_data",
)
ROWS_PER_PART = 250_000
APPROACHES = ("curated", "vila", "reference")
WORDS = ("river", "prime", "revolution", "photosynthesis", "chess", "volcano", "answer", "question", "because", "therefore")


def generate(root: Path, n: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (root / "_done").exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(n)
    per_folder = [n // len(FOLDERS) + (1 if i < n % len(FOLDERS) else 0) for i in range(len(FOLDERS))]
    words = np.array(WORDS)
    for folder, rows in zip(FOLDERS, per_folder):
        (root / folder).mkdir(parents=True)
        for part, start in enumerate(range(0, rows, ROWS_PER_PART)):
            k = min(ROWS_PER_PART, rows - start)
            w = words[rng.integers(0, len(words), size=(k, 6))]
            ids = rng.integers(0, 1_000_000, size=k)
            inputs = [f"Q{i}: what links {a} {b} {c} and {d}? Think about {e} {f}." for i, (a, b, c, d, e, f) in zip(ids, w.tolist())]
            targets = [f"The {a} and the {b}." for a, b in w[:, :2].tolist()]
            table = pa.table(
                {
                    "inputs": inputs,
                    "targets": targets,
                    "_template_idx": pa.array(rng.integers(0, 10, size=k)),
                    "_task_source": pa.array([folder.split("_")[0]] * k),
                    "_task_name": pa.array(["synthetic"] * k),
                    "_template_type": pa.array([folder.split("_")[1]] * k),
                }
            )
            pq.write_table(table, root / folder / f"part.{part}.parquet", row_group_size=65_536, compression="zstd")
            del table, inputs, targets
    (root / "_done").write_text(str(n))


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(data: Path, out: Path, sample: int, policy: str) -> int:
    from vila_assets.core import flan
    from vila_assets.core.vflan import PerFileLayout

    parts = flan.local_parts(data, policy)
    summary = flan.sample_flan(parts, sample, 0, PerFileLayout(out, out / "parquet"), policy=policy)
    return summary.info.rows


def run_reference(data: Path, out: Path, sample: int) -> int:
    """VILA's preprocess_flan.py: every inputs/targets string into two lists, then torch.linspace."""
    import pyarrow.parquet as pq
    import torch

    inputs: list[str] = []
    targets: list[str] = []
    for folder in sorted(p for p in os.listdir(data) if p.endswith("_data")):
        for name in sorted(os.listdir(data / folder)):  # lexicographic part order, as VILA
            t = pq.read_table(data / folder / name, columns=["inputs", "targets"])
            inputs += t.column("inputs").to_pylist()
            targets += t.column("targets").to_pylist()
            del t
    idx = torch.linspace(0, len(inputs) - 1, sample).int().tolist()
    # Above 2**24 rows float32 rounds the last index up past the end (N=20M: 19,999,999 -> 20,000,000),
    # so VILA's script would raise IndexError here; clamp (as the vila policy does) so the run can finish.
    idx = [min(i, len(inputs) - 1) for i in idx]
    records = [{"question": inputs[i], "answer": targets[i], "id": "text_flan_%08d" % k, "image": []} for k, i in enumerate(idx)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "text_flan_1m.pkl", "wb") as fh:
        pickle.dump(records, fh)
    return len(records)


def child(args) -> None:
    t0 = time.perf_counter()
    if args.child == "reference":
        n = run_reference(Path(args.data), Path(args.out), args.sample)
    else:
        n = run_ours(Path(args.data), Path(args.out), args.sample, args.child)
    print(json.dumps({"records": n, "seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}))


def measure(which: str, data: Path, out: Path, sample: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", which, "--data", str(data), "--out", str(out), "--sample", str(sample)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if res.returncode:
        raise SystemExit(f"{which} failed on {data}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2_000_000, help="rows of the small input (the large one has 10x)")
    ap.add_argument("--sample", type=int, default=1_000_000)
    ap.add_argument("--workdir", default="/tmp/vila_flan_bench")
    ap.add_argument("--skip-reference-10x", action="store_true", help="skip the reference at 10·N (needs ~10 GB RAM)")
    ap.add_argument("--child", choices=APPROACHES, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    work = Path(args.workdir)
    results = {}
    for scale in (1, 10):
        rows = args.n * scale
        data = work / f"flan_{rows}"
        t0 = time.perf_counter()
        generate(data, rows)
        print(f"input {rows:>11,} rows: generated in {time.perf_counter() - t0:.1f} s", flush=True)
        for which in APPROACHES:
            if which == "reference" and scale == 10 and args.skip_reference_10x:
                continue
            r = measure(which, data, work / f"out_{which}_{rows}", args.sample)
            results[(which, scale)] = r
            print(f"  {which:<9} sample {r['records']:>9,}: {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mb']:8.0f} MB", flush=True)
        if scale == 1:
            print(f"vila_matches_reference: {same_records(work / f'out_vila_{rows}', work / f'out_reference_{rows}')}")
    print()
    print(f"{'approach':<10} {'input rows':>12} {'seconds':>9} {'peak RSS MB':>12}")
    for (which, scale), r in sorted(results.items()):
        print(f"{which:<10} {args.n * scale:>12,} {r['seconds']:>9.1f} {r['peak_rss_mb']:>12.0f}")
    if ("reference", 10) in results:
        print(f"reference_rss_growth_10x: {results[('reference', 10)]['peak_rss_mb'] / results[('reference', 1)]['peak_rss_mb']:.2f}")
    growth = {p: results[(p, 10)]["peak_rss_mb"] / results[(p, 1)]["peak_rss_mb"] for p in ("curated", "vila")}
    for p, g in growth.items():
        print(f"flan_rss_growth_10x[{p}]: {g:.2f}")
    print(f"flan_rss_growth_10x: {max(growth.values()):.2f}")


def same_records(a: Path, b: Path) -> bool:
    """Whether two text_flan_1m.pkl files hold the same records (key order included)."""
    with open(a / "text_flan_1m.pkl", "rb") as fa, open(b / "text_flan_1m.pkl", "rb") as fb:
        return [list(r.items()) for r in pickle.load(fa)] == [list(r.items()) for r in pickle.load(fb)]

if __name__ == "__main__":
    main()
