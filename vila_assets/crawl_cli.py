"""``vila-assets crawl INPUT OUTPUT_DIR [options]``: the crawler from a shell.

``main(argv)`` takes the arguments after the word "crawl"; ``python -m vila_assets.crawl_cli`` works too.

The crawler is imported inside the functions: a spawned crawler process re-imports this module as its
``__main__`` before anything else, and must not load OpenCV, Pillow and aiohttp before it has armed
"die with my parent" (``core/crawl/parts.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vila_assets.core.crawl import CrawlConfig, CrawlOption


def build_parser(prog: str = "vila-assets crawl") -> argparse.ArgumentParser:
    from vila_assets.core.crawl import crawl_options

    p = argparse.ArgumentParser(
        prog=prog,
        description="Download, check and re-encode the images of a URL list into OUTPUT_DIR/samples.parquet. "
        "Re-running after an interruption resumes where it stopped.",
    )
    p.add_argument("input", help="Parquet or JSONL with a 'url' column (optional 'key', 'caption')")
    p.add_argument("output_dir", help="where samples.parquet (and the resume checkpoint) go")
    for option in crawl_options():
        _add_option(p, option)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _add_option(parser: argparse.ArgumentParser, option: CrawlOption) -> None:
    """One ``CrawlConfig`` field as a flag; ``dest`` is the field's name, whatever the flag."""
    # argparse would name the value after ``dest`` (CHECKPOINT_S for --checkpoint-seconds); a choice
    # list shows itself.
    metavar = None if option.choices else option.metavar or option.flag.lstrip("-").replace("-", "_").upper()
    if option.repeatable:
        parser.add_argument(option.flag, dest=option.name, action="append", type=option.item_type, default=[],
                            metavar=metavar, help=f"{option.help} (repeatable)")
        return
    parser.add_argument(option.flag, dest=option.name, type=option.item_type, default=option.default,
                        choices=option.choices, metavar=metavar, help=f"{option.help} (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> CrawlConfig:
    from vila_assets.core.crawl import CrawlConfig, crawl_options

    return CrawlConfig(**{option.name: getattr(args, option.name) for option in crawl_options()})


def main(argv: list[str] | None = None) -> int:
    from vila_assets.core.crawl import crawl

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
