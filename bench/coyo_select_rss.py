"""Peak RSS of the COYO top-20 % selection on a synthetic 5M-row shard (target: <= 250 MB).

    .venv/bin/python bench/coyo_select_rss.py [--rows 5000000] [--bucket-rows 50000] [--policy curated|vila]
                                              [--dir bench/out/coyo]

The shard is generated once (cached in ``--dir``); the selection then runs in a fresh child process so its
peak RSS (``ru_maxrss`` of that child: interpreter + pyarrow + numpy included) is measured alone, once with
pyarrow's default memory pool and once with the system allocator (``ARROW_DEFAULT_MEMORY_POOL=system``),
which hands freed pages back sooner. The last line is ``coyo_select_peak_rss_mb (<policy>): X`` for the
default pool.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ALLOCATORS = (("pyarrow default pool", {}), ("system allocator", {"ARROW_DEFAULT_MEMORY_POOL": "system"}))

CHILD = """
import json, resource, sys, time
from vila_assets.core.coyo import SelectionConfig, select_top, verify_selection
shard, out, bucket, policy = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t = time.perf_counter()
s = select_top(shard, out, SelectionConfig(policy=policy, bucket_rows=bucket))
elapsed = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
problems = verify_selection(shard, out, s)
print(json.dumps({"seconds": round(elapsed, 2), "peak_rss_mb": round(rss, 1), "summary": s.as_dict(),
                  "verify_problems": problems}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--bucket-rows", type=int, default=50_000)
    ap.add_argument("--policy", default="curated", choices=["curated", "vila"])
    ap.add_argument("--dir", default="bench/out/coyo")
    args = ap.parse_args()

    out_dir = Path(args.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shard = out_dir / f"synthetic-{args.rows}.parquet"
    if not shard.exists():
        from vila_assets.sample_world.generators import write_synthetic_shard

        t = time.perf_counter()
        write_synthetic_shard(shard, args.rows)
        print(f"generated {shard} ({shard.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f}s")
    results = {}
    for label, extra in ALLOCATORS:
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(shard), str(out_dir / f"selection-{args.rows}.parquet"),
             str(args.bucket_rows), args.policy],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **extra},
        )
        result = results[label] = json.loads(res.stdout.strip().splitlines()[-1])
        s = result["summary"]
        print(f"[{label}] rows {s['rows']:,}  passing {s['passing']:,}  selected {s['selected']:,}  cut {s['cut']:.4f}  "
              f"ties at cut {s['ties_at_cut']} (kept {s['ties_kept']})  passes {s['passes']}  "
              f"max rows held {s['max_rows_held']:,}")
        print(f"[{label}] selection {result['seconds']}s; peak RSS {result['peak_rss_mb']:.1f} MB; "
              f"verify problems: {result['verify_problems'] or 'none'}")
    print(f"coyo_select_peak_rss_mb ({args.policy}): {results[ALLOCATORS[0][0]]['peak_rss_mb']:.1f}")


if __name__ == "__main__":
    main()
