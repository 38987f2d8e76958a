"""``vila-assets crawl INPUT OUTPUT_DIR [options]``: the crawler from a shell.

``main(argv)`` takes the arguments after the word "crawl"; ``python -m vila_assets.crawl_cli`` works too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from vila_assets.core.crawl import CrawlConfig, crawl

_DEFAULTS = CrawlConfig()


def build_parser(prog: str = "vila-assets crawl") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Download, check and re-encode the images of a URL list into OUTPUT_DIR/samples.parquet. "
        "Re-running after an interruption resumes where it stopped.",
    )
    p.add_argument("input", help="Parquet or JSONL with a 'url' column (optional 'key', 'caption')")
    p.add_argument("output_dir", help="where samples.parquet (and the resume checkpoint) go")
    p.add_argument("--image-size", type=int, default=_DEFAULTS.image_size, help="output short side in px (default %(default)s)")
    p.add_argument("--quality", type=int, default=_DEFAULTS.quality, help="JPEG quality (default %(default)s)")
    p.add_argument("--min-size", type=int, default=_DEFAULTS.min_size, help="min source short side, else 'filtered'")
    p.add_argument("--max-aspect-ratio", type=float, default=_DEFAULTS.max_aspect_ratio, help="0 = off")
    p.add_argument("--timeout", type=float, default=_DEFAULTS.timeout, help="total seconds per request attempt")
    p.add_argument("--retries", type=int, default=_DEFAULTS.retries)
    p.add_argument("--concurrency", type=int, default=_DEFAULTS.concurrency,
                   help="requests in flight, all processes together (default %(default)s)")
    p.add_argument("--per-host", type=int, default=_DEFAULTS.per_host,
                   help="requests in flight per host, all processes together (default %(default)s)")
    p.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="exempt a network from the private-address block (repeatable), e.g. 127.0.0.0/8 for a local test web",
    )
    p.add_argument("--max-bytes", type=int, default=_DEFAULTS.max_bytes)
    p.add_argument("--max-pixels", type=int, default=_DEFAULTS.max_pixels)
    p.add_argument("--max-redirects", type=int, default=_DEFAULTS.max_redirects)
    p.add_argument("--user-agent", default=_DEFAULTS.user_agent)
    p.add_argument("--backoff-base", type=float, default=_DEFAULTS.backoff_base)
    p.add_argument("--backoff-max", type=float, default=_DEFAULTS.backoff_max)
    p.add_argument("--processes", type=int, default=_DEFAULTS.processes,
                   help="crawler processes, each with its own event loop and imaging threads (0 = one per usable CPU)")
    p.add_argument("--workers", type=int, default=_DEFAULTS.workers, help="imaging threads per process")
    p.add_argument("--http-backend", choices=("aiohttp", "httpx"), default=_DEFAULTS.http_backend)
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default=_DEFAULTS.event_loop)
    p.add_argument("--checkpoint-rows", type=int, default=_DEFAULTS.checkpoint_rows)
    p.add_argument("--checkpoint-seconds", type=float, default=_DEFAULTS.checkpoint_s)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def config_from_args(args: argparse.Namespace) -> CrawlConfig:
    return CrawlConfig(
        image_size=args.image_size,
        quality=args.quality,
        min_size=args.min_size,
        max_aspect_ratio=args.max_aspect_ratio,
        timeout=args.timeout,
        retries=args.retries,
        concurrency=args.concurrency,
        per_host=args.per_host,
        allow_networks=tuple(args.allow_network),
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        max_redirects=args.max_redirects,
        user_agent=args.user_agent,
        backoff_base=args.backoff_base,
        backoff_max=args.backoff_max,
        processes=args.processes,
        workers=args.workers,
        http_backend=args.http_backend,
        event_loop=args.event_loop,
        checkpoint_rows=args.checkpoint_rows,
        checkpoint_s=args.checkpoint_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"vila-assets crawl: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too much
    progress = (lambda done, total, counts: None) if args.quiet else None
    try:
        summary = crawl(args.input, args.output_dir, config, progress=progress)
    except (OSError, ValueError) as exc:
        print(f"vila-assets crawl: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({
        "output": str(summary.output_path),
        "total": summary.total,
        "counts": summary.counts,
        "resumed": summary.resumed,
        "elapsed_s": round(summary.elapsed_s, 2),
        "bytes_downloaded": summary.bytes_downloaded,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
