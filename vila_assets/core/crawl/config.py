"""``CrawlConfig``: the crawler's options, defined once.

Each field carries its help text (and, where the command line spells it differently, its flag) in
``dataclasses.field(metadata=...)``. The ``vila-assets crawl`` flags (``crawl_cli``) and the Dagster
``ImageCrawler`` resource's fields (``resources/crawler.py``) are both generated from ``crawl_options()``,
so an option added here appears in both, with the same default and help.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .imaging import IMAGING_VERSION, ImageSpec

DEFAULT_USER_AGENT = "vila-assets/0.1 (+https://github.com/vila-assets/vila_assets)"

HttpBackend = Literal["aiohttp", "httpx"]
EventLoop = Literal["uvloop", "asyncio"]


def _option(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None,
            tuning: bool = False) -> Any:
    """A ``CrawlConfig`` field. ``flag``: the CLI flag when it is not ``--<name-with-dashes>``;
    ``tuning``: the option only changes speed, never samples.parquet (a checkpoint survives a change)."""
    return field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar, "tuning": tuning})


@dataclass(frozen=True)
class CrawlConfig:
    image_size: int = _option(336, "short side of the re-encoded image in px (VILA's); smaller images are not upscaled")
    quality: int = _option(75, "JPEG quality of the re-encoded image")
    min_size: int = _option(0, "min short side of the SOURCE image in px, else 'filtered' (0 = off)")
    max_aspect_ratio: float = _option(0.0, "max long/short side ratio of the source image, else 'filtered' (0 = off)")
    timeout: float = _option(20.0, "total seconds per request attempt, redirects included")
    retries: int = _option(3, "extra attempts after a transient failure (timeout, 429, 5xx ...)")
    concurrency: int = _option(64, "requests in flight, all processes together", tuning=True)
    per_host: int = _option(16, "requests in flight per host, all processes together", tuning=True)
    allow_networks: tuple[str, ...] = _option(
        (), "network (CIDR) exempt from the private-address block, e.g. 127.0.0.0/8 for a local test web",
        flag="--allow-network", metavar="CIDR",
    )
    max_bytes: int = _option(20 * 2**20, "largest response body in bytes; a bigger download is abandoned")
    max_pixels: int = _option(
        64_000_000, "largest source image in pixels (width x height); more is a decompression bomb"
    )
    body_memory: int = _option(
        512 * 2**20, "bytes of downloaded bodies held at once, all processes together; a download waits "
        "(inside its deadline) for room", tuning=True,
    )
    decode_memory: int = _option(
        768 * 2**20, "bytes of decoded pixels at once, all processes together (an image's estimated peak "
        "is reserved before decoding; a bigger one runs alone)", tuning=True,
    )
    max_redirects: int = _option(5, "redirects followed per URL")
    user_agent: str = _option(DEFAULT_USER_AGENT, "User-Agent header; its first word is our X-Robots-Tag agent name")
    backoff_base: float = _option(0.5, "first retry delay in seconds (doubling per attempt, with jitter)")
    backoff_max: float = _option(30.0, "longest retry delay in seconds, a server's Retry-After included")
    processes: int = _option(
        0, "crawler processes, each with its own event loop and imaging threads (0 = one per usable CPU)", tuning=True
    )
    workers: int = _option(2, "imaging threads (decode, resize, encode) per crawler process", tuning=True)
    http_backend: HttpBackend = _option(
        "aiohttp", "wire layer under the httpx client: aiohttp (fast) or httpx", tuning=True
    )
    event_loop: EventLoop = _option(
        "uvloop", "event loop: uvloop (asyncio where it is not installed) or asyncio", tuning=True
    )
    checkpoint_rows: int = _option(
        256, "flush finished rows to the resume checkpoint every this many rows ...", tuning=True
    )
    checkpoint_s: float = _option(5.0, "... or every this many seconds", flag="--checkpoint-seconds", tuning=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_networks", tuple(self.allow_networks))
        if self.body_memory < 1 or self.decode_memory < 1:
            raise ValueError(f"body_memory and decode_memory must be >= 1, not {self.body_memory} and {self.decode_memory}")
        if self.processes < 0 or self.workers < 1:
            raise ValueError(f"processes must be >= 0 and workers >= 1, not {self.processes} and {self.workers}")
        if self.http_backend not in typing.get_args(HttpBackend):
            raise ValueError(f"http_backend must be 'aiohttp' or 'httpx', not {self.http_backend!r}")
        if self.event_loop not in typing.get_args(EventLoop):
            raise ValueError(f"event_loop must be 'uvloop' or 'asyncio', not {self.event_loop!r}")

    def image_spec(self) -> ImageSpec:
        return ImageSpec(self.image_size, self.quality, self.min_size, self.max_aspect_ratio, self.max_pixels)

    def output_fields(self) -> dict:
        """Fields that change samples.parquet; a checkpoint made under other values is discarded."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.metadata["tuning"]}
        return {**fields, "imaging_version": IMAGING_VERSION}

    def for_part(self, parts: int) -> CrawlConfig:
        """One of ``parts`` processes' share of the connection limits (totals stay as configured;
        a per-host limit below ``parts`` still gives each process one connection per host)."""
        return dataclasses.replace(
            self, concurrency=max(1, self.concurrency // parts), per_host=max(1, self.per_host // parts)
        )


@dataclass(frozen=True)
class CrawlOption:
    """One ``CrawlConfig`` field as a front end (CLI, Dagster resource) presents it."""

    name: str
    type: Any  # the resolved annotation: int, float, str, tuple[str, ...] or a Literal
    default: Any
    help: str
    flag: str
    metavar: str | None

    @property
    def repeatable(self) -> bool:
        """A tuple option: given once per item (``--allow-network A --allow-network B``)."""
        return typing.get_origin(self.type) is tuple

    @property
    def choices(self) -> tuple[str, ...] | None:
        return typing.get_args(self.type) if typing.get_origin(self.type) is Literal else None

    @property
    def item_type(self) -> type:
        """What one value on the command line converts to."""
        if self.repeatable:
            return typing.get_args(self.type)[0]
        return str if self.choices else self.type


def crawl_options() -> list[CrawlOption]:
    """Every ``CrawlConfig`` field, in declaration order."""
    hints = typing.get_type_hints(CrawlConfig)
    return [
        CrawlOption(
            name=f.name,
            type=hints[f.name],
            default=f.default,
            help=f.metadata["help"],
            flag=f.metadata["flag"] or "--" + f.name.replace("_", "-"),
            metavar=f.metadata["metavar"],
        )
        for f in dataclasses.fields(CrawlConfig)
    ]
