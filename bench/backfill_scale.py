"""MMC4-scale backfill: how fast a backfill over every MMC4 shard is enqueued and drained.

Registers the real MMC4 partition set (the 23,085 shard keys of mmc4-core: indices 0..23098 without the 14
missing ones, ``vila_assets.core.mmc4.core_shard_ids``) on a fresh Dagster instance (SQLite, or with
``--postgres`` a throwaway PostgreSQL server on 127.0.0.1 and ``deploy/dagster.yaml``), serves a code
location holding the three MMC4 shard assets with their real partitions definition, backfill policy,
dependencies and check specs but no-op bodies, starts ``dagster dev`` (webserver, daemon, code server) on
127.0.0.1 and launches the backfill the way a user would: over GraphQL, as ``vila-assets backfill`` does
(``vila_assets.backfill``). It reports the seconds until every run of the backfill is created and until
every run has finished, the peak RSS of the daemon and the webserver, the CPU seconds of every process
(wall time depends on what else runs on the box, CPU time hardly), and how long the asset's partitions
page takes to answer (the GraphQL query the page issues; ``--browser``: the page in headless Chromium).
The last two lines are ``mmc4_full_backfill_drain_seconds: Y`` and ``mmc4_full_backfill_enqueue_seconds: X``.

    .venv/bin/python bench/backfill_scale.py --postgres
    .venv/bin/python bench/backfill_scale.py --keys 2000          # a reduced run, SQLite

Instance settings come from the project's ``dagster.yaml`` (``deploy/dagster.yaml`` with ``--postgres``);
the flags override one thing each for an experiment. Results and the reasoning: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml

REPO = Path(__file__).resolve().parent.parent
# Dagster 1.13: one ASSET_MATERIALIZATION_PLANNED event per asset and run (a partition subset) instead of one
# per partition.
PLANNED_EVENTS_SETTING = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
# Dagster 1.13: the materializations of a ranged run are written N at a time (one INSERT on Postgres; SQLite
# still writes them one by one).
EVENT_BATCH_SETTING = "DAGSTER_EVENT_BATCH_SIZE"

ASSETS = ("mmc4_annotations", "mmc4_images", "mmc4_core_shard")


# --- the code location the benchmark serves -------------------------------------------------------------


def cheap_asset(real: dg.AssetsDefinition, policy: dg.BackfillPolicy | None = None) -> dg.AssetsDefinition:
    """``real`` with a no-op body: same key, deps, partitions, backfill policy (unless ``policy``) and
    check specs; one passing result per check, as the real body reports one per check per run."""
    spec = next(iter(real.specs))
    checks = list(real.check_specs)

    @dg.multi_asset(name=real.op.name, specs=[spec], check_specs=checks, partitions_def=real.partitions_def,
                    backfill_policy=policy or real.backfill_policy, can_subset=False)
    def _cheap(context):
        yield dg.MaterializeResult(
            asset_key=spec.key,
            metadata={"shards_in_run": len(context.partition_keys)},
            check_results=[dg.AssetCheckResult(asset_key=spec.key, check_name=c.name, passed=True) for c in checks],
        )

    return _cheap


def cheap_definitions(max_partitions_per_run: int | None = None, executor: str = "multiprocess") -> dg.Definitions:
    """The MMC4 shard assets with no-op bodies; ``max_partitions_per_run`` replaces the real backfill
    policy's range size (experiments only); ``executor``: ``multiprocess`` (Dagster's default) or
    ``in_process`` (no extra process per step)."""
    from vila_assets.assets import mmc4

    policy = dg.BackfillPolicy.multi_run(max_partitions_per_run) if max_partitions_per_run else None
    assets = [cheap_asset(getattr(mmc4, name), policy) for name in ASSETS]
    kwargs = {"executor": dg.in_process_executor} if executor == "in_process" else {}
    return dg.Definitions(assets=assets, **kwargs)


# --- the benchmark --------------------------------------------------------------------------------------

PARTITIONS_PAGE_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { id
    partitionKeysByDimension { name type partitionKeys }
    assetPartitionStatuses { ... on DefaultPartitionStatuses {
      materializedPartitions materializingPartitions failedPartitions } } } }
}"""  # the query the asset's partitions page issues (dagster-webserver 1.13), trimmed to the dynamic case


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def instance_yaml(args: argparse.Namespace) -> dict:
    """The project's instance settings (SQLite: ``dagster.yaml``; Postgres: ``deploy/dagster.yaml``) with
    the command line's overrides."""
    base = yaml.safe_load((REPO / ("deploy/dagster.yaml" if args.postgres else "dagster.yaml")).read_text())
    runs = base.setdefault("concurrency", {}).setdefault("runs", {})
    if args.max_runs is not None:
        runs["max_concurrent_runs"] = args.max_runs
    if args.backfill_limit is not None:
        runs["tag_concurrency_limits"] = [
            {**t, "limit": args.backfill_limit} if t["key"] == "dagster/backfill" else t
            for t in runs.get("tag_concurrency_limits", [])
        ]
    override: dict = {}
    if args.dequeue_interval is not None:
        override["run_queue"] = {"dequeue_interval_seconds": args.dequeue_interval}
    if args.submit_workers:
        override["backfills"] = {"use_threads": True, "num_workers": 4, "num_submit_workers": args.submit_workers}
    return merged(base, override)


def write_home(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """``$DAGSTER_HOME`` with the instance settings, and a workspace serving ``cheap_definitions``."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml(args), sort_keys=False))
    code = root / "bench_location.py"
    code.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'bench')!r})\n"
        "from backfill_scale import cheap_definitions\n"
        f"defs = cheap_definitions({args.range!r}, {args.executor!r})\n"
    )
    workspace = root / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_file": {
        "relative_path": str(code), "attribute": "defs", "location_name": "mmc4_bench"}}]}))
    return home, workspace


def mmc4_keys(n: int) -> list[str]:
    """The first ``n`` keys of the real MMC4 partition set (all 23,085 by default)."""
    from vila_assets.core.mmc4 import core_shard_ids, partition_key

    ids = core_shard_ids()
    if n > len(ids):
        raise SystemExit(f"--keys {n}: the real set has {len(ids)} shards")
    return [partition_key(i) for i in ids[:n]]


# a run worker is a multiprocessing child of the code server (DefaultRunLauncher over gRPC)
ROLES = (("webserver", "dagster_webserver"), ("daemon", "dagster._daemon"), ("run_workers", "multiprocessing"),
         ("dev_and_code_servers", "dagster"))
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the fields after "pid (comm)"


class Sampler(threading.Thread):
    """Every ``every`` seconds: the RSS of the webserver and the daemon (peaks kept), and the CPU time of
    every process of the ``dagster dev`` session (webserver, daemon, code servers, run workers), summed
    per role. CPU time does not depend on what else runs on the box; wall time does."""

    def __init__(self, session: int, pids: dict[str, int], every: float = 0.5):
        super().__init__(daemon=True)
        self.session, self.pids, self.every = session, pids, every
        self.peak = {name: 0 for name in pids}
        self.cpu: dict[str, tuple[str, float]] = {}  # pid -> (role, CPU seconds)
        self.done = threading.Event()

    def run(self) -> None:
        from tests.ui_server import rss_bytes

        while not self.done.wait(self.every):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_bytes(pid))
            self.sample_cpu()

    def sample_cpu(self) -> None:
        from tests.ui_server import cmdline

        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            fields = _stat(pid)
            if not fields or int(fields[3]) != self.session:  # field 6: session id
                continue
            seconds = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
            role = self.cpu[pid][0] if pid in self.cpu else _role(cmdline(int(pid)))
            self.cpu[pid] = (role, seconds)

    def cpu_by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for role, seconds in self.cpu.values():
            out[role] = out.get(role, 0.0) + seconds
        return out


def _role(cmdline: str) -> str:
    return next((role for role, marker in ROLES if marker in cmdline), "other")


def postgres_cpu_seconds(pg) -> float:
    """CPU time of the Postgres server: the postmaster and the backends it has reaped."""
    pid = (pg.directory / "data" / "postmaster.pid").read_text().split()[0]
    fields = _stat(pid) or ["0"] * 20
    return sum(int(f) for f in fields[11:15]) / TICK


@dataclass
class Drain:
    """What the runs of the backfill(s) say: when each was created and when each finished."""

    expected: int
    created: list[float]
    ended: list[float]
    failed: int

    @property
    def all_created(self) -> bool:
        return len(self.created) >= self.expected

    @property
    def all_ended(self) -> bool:
        return len(self.ended) >= self.expected


def drain_state(instance: dg.DagsterInstance, backfill_ids: list[str], expected: int) -> Drain:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_ids}))
    finished = [r for r in records if r.dagster_run.is_finished]
    return Drain(
        expected,
        sorted(r.create_timestamp.timestamp() for r in records),
        sorted(r.end_time for r in finished if r.end_time),
        sum(r.dagster_run.status != dg.DagsterRunStatus.SUCCESS for r in finished),
    )


def expected_runs(n_keys: int, chunk: int, per_run: int) -> int:
    """Runs of a chunked backfill: each chunk is cut into ranges of the backfill policy's size."""
    full, rest = divmod(n_keys, chunk)
    return full * -(-chunk // per_run) + -(-rest // per_run)


def time_partitions_page(dev, asset: str) -> float:
    """Seconds for the GraphQL query the asset's partitions page issues (keys + statuses)."""
    t = time.perf_counter()
    node = dev.gql(PARTITIONS_PAGE_QUERY, assetKey={"path": [asset]})["assetNodeOrError"]
    elapsed = time.perf_counter() - t
    assert node["partitionKeysByDimension"][0]["partitionKeys"], "the partitions page shows no keys"
    return elapsed


def time_partitions_page_in_browser(url: str, asset: str, first_key: str, shots: Path) -> float | None:
    """Seconds until the asset's partitions view shows its first key in headless Chromium; None without
    Chromium (the GraphQL timing stands)."""
    from tests.ui_server import chromium_page

    try:
        with chromium_page() as page:
            t = time.perf_counter()
            page.goto(f"{url}/assets/{asset}?view=partitions")
            page.get_by_text(first_key, exact=True).first.wait_for(timeout=180_000)
            elapsed = time.perf_counter() - t
            page.screenshot(path=str(shots / f"{asset}-partitions.png"))
            return elapsed
    except FileNotFoundError:
        return None


def follow_drain(instance, dev, ids: list[str], expected: int, asset: str, timeout: float,
                 out=print) -> tuple[Drain, float | None]:
    """Poll the runs until all of them have finished; time the partitions page once, half way."""
    from vila_assets.core.progress import ProgressLine

    progress = ProgressLine("bench: runs finished", expected, "runs", every=15.0, out=out)
    mid_page = None
    deadline = time.monotonic() + timeout
    while True:
        state = drain_state(instance, ids, expected)
        progress.update(len(state.ended), f"{len(state.created)}/{expected} created, {state.failed} failed")
        if mid_page is None and len(state.ended) >= expected // 2:
            mid_page = time_partitions_page(dev, asset)
        if state.all_ended:
            return state, mid_page
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(state.ended)}/{expected} runs finished after {timeout:.0f}s:\n{dev.log_tail()}")
        time.sleep(2.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=23085, help="MMC4 shard keys to register (default: all 23,085)")
    p.add_argument("--assets", nargs="+", default=[ASSETS[-1]], choices=ASSETS,
                   help="assets to backfill (default: mmc4_core_shard)")
    p.add_argument("--chunk", type=int, default=None, help="partitions per backfill (default: one backfill)")
    p.add_argument("--range", type=int, default=None, help="replace the backfill policy's partitions per run")
    p.add_argument("--executor", choices=("in_process", "multiprocess"), default="in_process")
    p.add_argument("--planned-events", choices=("partition", "run"), default="run",
                   help=f"'run': one planned event per asset and run ({PLANNED_EVENTS_SETTING})")
    p.add_argument("--event-batch", type=int, default=1000,
                   help=f"{EVENT_BATCH_SETTING}: a ranged run's materializations written in batches (Postgres)")
    p.add_argument("--max-runs", type=int, default=None, help="concurrency.runs.max_concurrent_runs")
    p.add_argument("--backfill-limit", type=int, default=None, help="the dagster/backfill tag's run limit")
    p.add_argument("--dequeue-interval", type=int, default=1,
                   help="run_queue.dequeue_interval_seconds (default: 1, as the project's dagster.yaml)")
    p.add_argument("--submit-workers", type=int, default=0, help="backfill daemon threads submitting runs")
    p.add_argument("--postgres", action="store_true", help="Postgres storage (a throwaway server on 127.0.0.1)")
    p.add_argument("--browser", action="store_true", help="also time the partitions page in headless Chromium")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--workdir", type=Path, default=None, help="keep the instance here (default: a temp dir)")
    return p.parse_args(argv)


def policy_range(args: argparse.Namespace) -> int:
    from vila_assets.assets import mmc4

    return args.range or getattr(mmc4, args.assets[0]).backfill_policy.max_partitions_per_run


def run_bench(args: argparse.Namespace, root: Path, env: dict[str, str], pg=None) -> dict:
    from tests.ui_server import DagsterDev
    from vila_assets.backfill import GraphQL, launch

    home, workspace = write_home(root, args)
    keys = mmc4_keys(args.keys)
    chunk = args.chunk or len(keys)
    expected = expected_runs(len(keys), chunk, policy_range(args))
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("mmc4_shards", keys)
    results: dict = {"expected_runs": expected}
    with DagsterDev(home, workspace, env=env) as dev:
        sampler = Sampler(dev.proc.pid, dev.pids())
        sampler.start()
        results["page_idle_s"] = time_partitions_page(dev, args.assets[-1])
        launched_at = time.time()
        gql = GraphQL(dev.url)
        ids = launch(gql, args.assets, chunk)
        gql.close()
        results["launch_s"] = time.time() - launched_at
        state, results["page_mid_s"] = follow_drain(instance, dev, ids, expected, args.assets[-1], args.timeout)
        results["page_after_s"] = time_partitions_page(dev, args.assets[-1])
        if args.browser:
            results["page_browser_s"] = time_partitions_page_in_browser(
                dev.url, args.assets[-1], keys[0], root / "screenshots")
        sampler.done.set()
        sampler.join()
        sampler.sample_cpu()
        results["peak_rss"] = dict(sampler.peak)
        results["cpu_s"] = sampler.cpu_by_role()
        if pg is not None:
            results["cpu_s"]["postgres"] = postgres_cpu_seconds(pg)
    instance.dispose()
    results.update(enqueue_s=state.created[-1] - launched_at, drain_s=state.ended[-1] - launched_at,
                   runs=len(state.created), failed=state.failed)
    return results


def report(args: argparse.Namespace, r: dict) -> None:
    mb = {k: v / 2**20 for k, v in r["peak_rss"].items()}
    n_keys = args.keys * len(args.assets)
    print(f"instance: {'postgres' if args.postgres else 'sqlite'}; keys: {args.keys:,}; assets: {', '.join(args.assets)}; "
          f"partitions per run: {policy_range(args)}; runs: {r['runs']} (expected {r['expected_runs']}, "
          f"{r['failed']} not successful); backfills: {-(-args.keys // (args.chunk or args.keys))}; "
          f"executor: {args.executor}; planned events per {args.planned_events}; event batch {args.event_batch}")
    print(f"launch (GraphQL): {r['launch_s']:.1f} s")
    print(f"enqueue: {r['enqueue_s']:.1f} s ({r['runs'] / r['enqueue_s']:.2f} runs/s)")
    print(f"drain: {r['drain_s']:.1f} s ({r['runs'] / r['drain_s']:.2f} runs/s, {n_keys / r['drain_s']:.1f} asset partitions/s)")
    print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(mb.items())))
    cpu = r["cpu_s"]
    print(f"CPU: {sum(cpu.values()):.0f} s in all (" + ", ".join(f"{k} {v:.0f} s" for k, v in sorted(cpu.items()))
          + f"); {sum(cpu.values()) / r['runs']:.1f} CPU-s per run")
    page = f"partitions page (PartitionHealthQuery): idle {r['page_idle_s']:.2f} s, mid-backfill {r['page_mid_s']:.2f} s, " \
           f"after {r['page_after_s']:.2f} s"
    if r.get("page_browser_s") is not None:
        page += f"; in Chromium (first key visible) {r['page_browser_s']:.2f} s"
    print(page)
    print(f"mmc4_full_backfill_drain_seconds: {r['drain_s']:.1f}")
    print(f"mmc4_full_backfill_enqueue_seconds: {r['enqueue_s']:.1f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so `dagster dev` and the Postgres server are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(REPO))
    for setting in (PLANNED_EVENTS_SETTING, EVENT_BATCH_SETTING):
        os.environ.pop(setting, None)
    env = {PLANNED_EVENTS_SETTING: "true"} if args.planned_events == "run" else {}
    if args.event_batch:
        env[EVENT_BATCH_SETTING] = str(args.event_batch)
    with tempfile.TemporaryDirectory(prefix="mmc4-backfill-") as tmp:
        root = args.workdir or Path(tmp)
        if args.postgres:
            from tests.postgres_server import PostgresServer

            with PostgresServer() as pg:
                env.update(pg.env)
                os.environ.update(env)
                results = run_bench(args, root, env, pg)
        else:
            os.environ.update(env)
            results = run_bench(args, root, env)
    report(args, results)
    return 0 if results["failed"] == 0 and results["runs"] == results["expected_runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
