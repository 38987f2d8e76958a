"""``vila-assets``: the demo, the crawler, the sample world and instance set-up from one command."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path


def _dagster_home(path: str | None) -> Path:
    """Use ``$DAGSTER_HOME`` (or ``./.dagster_home``), seeding it with the project's ``dagster.yaml``."""
    home = Path(path or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    cfg = home / "dagster.yaml"
    template = Path("dagster.yaml")
    if not cfg.exists() and template.exists():
        shutil.copyfile(template, cfg)
    return home


def instance_setup() -> None:
    import dagster as dg

    from vila_assets.deployment import GPU_POOL

    instance = dg.DagsterInstance.get()
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, 1)


def cmd_demo(args: argparse.Namespace) -> int:
    from vila_assets.demo import run_demo

    _dagster_home(args.dagster_home)
    instance_setup()
    summary = run_demo(args.data_root, scale=args.scale, seed=args.seed, groups=args.group or None)
    print(summary.render())
    return 0 if summary.success else 1


def cmd_crawl(argv: list[str]) -> int:
    from vila_assets.crawl_cli import main as crawl_main

    return crawl_main(argv)


def cmd_world(args: argparse.Namespace) -> int:
    """Serve the sample world in the foreground (for ``dagster dev``); the ``sample_world`` profile finds
    it through ``<data root>/sample_world/world.json``."""
    from vila_assets.profiles import data_root_at
    from vila_assets.sample_world.world import SampleWorld

    data_root = Path(args.data_root).resolve()
    world = SampleWorld(data_root / "sample_world", seed=args.seed, scale=args.scale).start()
    info_file = world.info().save(data_root_at(str(data_root)))
    (data_root / "sample_world" / "world.pid").write_text(str(os.getpid()))
    print(f"sample world up: hub {world.endpoint}, images {world.image_base} ({info_file})")
    print(f"in another shell: make dev PROFILE=sample_world   (VILA_PROFILE=sample_world VILA_DATA_ROOT={data_root})")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        world.stop()
    return 0


def cmd_world_stop(args: argparse.Namespace) -> int:
    """Stop a world started by ``vila-assets world``: SIGTERM, then SIGKILL if it ignores it."""
    pid_file = Path(args.data_root).resolve() / "sample_world" / "world.pid"
    if not pid_file.exists():
        print("no sample world running")
        return 0
    pid = int(pid_file.read_text())
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            continue
        break
    pid_file.unlink(missing_ok=True)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Launch a partition backfill in chunks through a running webserver (``vila_assets.backfill``)."""
    from vila_assets.backfill import BackfillError, run_backfill

    try:
        return run_backfill(args.url, args.asset, args.chunk, args.partitions, wait=args.wait, poll=args.poll)
    except BackfillError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vila-assets", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="materialize every asset on the bundled sample world")
    d.add_argument("--data-root", default="./data")
    d.add_argument("--dagster-home", default=None)
    d.add_argument("--scale", choices=("test", "demo"), default="demo")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--group", action="append", help="limit to these asset groups (repeatable)")
    d.set_defaults(func=cmd_demo)

    sub.add_parser("crawl", help="crawl image URLs (see `vila-assets crawl --help`)", add_help=False)

    w = sub.add_parser("world", help="serve the sample world until interrupted")
    w.add_argument("--data-root", default="./data")
    w.add_argument("--scale", choices=("test", "demo"), default="demo")
    w.add_argument("--seed", type=int, default=0)
    w.set_defaults(func=cmd_world)

    ws = sub.add_parser("world-stop", help="stop a sample world started by `vila-assets world`")
    ws.add_argument("--data-root", default="./data")
    ws.set_defaults(func=cmd_world_stop)

    b = sub.add_parser("backfill", help="launch a partition backfill in chunks through a running webserver")
    b.add_argument("asset", nargs="+", help="asset key(s), e.g. mmc4_annotations (same partitions each)")
    b.add_argument("--chunk", type=int, required=True, help="partitions per backfill")
    b.add_argument("--partitions", default=None, help="FIRST..LAST in partition order (default: all)")
    b.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster webserver")
    b.add_argument("--wait", action="store_true", help="follow the backfills until they finish")
    b.add_argument("--poll", type=float, default=10.0, help="seconds between progress checks with --wait")
    b.set_defaults(func=cmd_backfill)

    i = sub.add_parser("instance-setup", help="create $DAGSTER_HOME and set the gpu pool to 1 slot")
    i.add_argument("--dagster-home", default=None)
    i.set_defaults(func=lambda a: (_dagster_home(a.dagster_home), instance_setup(), 0)[-1])
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one INFO line per request (crawler, huggingface_hub) or per storage migration step is noise
    for name in ("httpx", "httpx2", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if argv and argv[0] == "crawl":
        return cmd_crawl(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
