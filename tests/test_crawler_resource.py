"""The crawler's options are defined once (``CrawlConfig``): the CLI and the Dagster resource are views of
it that agree, and the resource is configuration only: it builds a CrawlConfig and calls the core."""

from __future__ import annotations

import json
import logging
import typing

import dagster as dg
import pydantic
import pytest

from vila_assets.core.crawl import CrawlConfig, CrawlOption, ProgressLog, crawl_options
from vila_assets.core.crawl import progress as progress_module
from vila_assets.crawl_cli import build_parser, config_from_args
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.sample_world.image_web import ImageWeb, photo_url


def _other_value(option: CrawlOption):
    """A valid value different from the option's default."""
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    if option.repeatable:
        return ("10.0.0.0/8", "192.168.0.0/16")
    if option.type is int:
        return option.default + 3
    if option.type is float:
        return option.default + 1.5
    if option.type is str:
        return option.default + "-other"
    raise AssertionError(f"no test value for {option.name}: {option.type}")


NON_DEFAULT = {option.name: _other_value(option) for option in crawl_options()}


def _argv(values: dict) -> list[str]:
    argv = ["in.parquet", "out"]
    for option in crawl_options():
        items = values[option.name] if option.repeatable else [values[option.name]]
        for item in items:
            argv += [option.flag, str(item)]
    return argv


def test_every_crawl_option_is_a_cli_flag_with_the_config_default():
    parser = build_parser()
    flags = {a.dest: a for a in parser._actions}
    for option in crawl_options():
        assert option.flag in flags[option.name].option_strings
        assert flags[option.name].help.startswith(option.help)
    # Flags users already type keep their spelling.
    assert flags["allow_networks"].option_strings == ["--allow-network"]
    assert flags["checkpoint_s"].option_strings == ["--checkpoint-seconds"]
    assert config_from_args(parser.parse_args(["in.parquet", "out"])) == CrawlConfig()


def test_every_crawl_option_is_a_resource_field_with_the_config_default_and_help():
    fields = ImageCrawler.to_config_schema().as_field().config_type.fields
    assert set(fields) == {option.name for option in crawl_options()}
    for option in crawl_options():
        default = list(option.default) if option.repeatable else option.default
        assert fields[option.name].default_value == default, option.name
        assert fields[option.name].description == option.help
    assert ImageCrawler().crawl_config() == CrawlConfig()


def test_a_non_default_value_of_every_option_reaches_the_crawl_config_from_each_front_end():
    expected = CrawlConfig(**NON_DEFAULT)
    assert all(getattr(expected, name) != getattr(CrawlConfig(), name) for name in NON_DEFAULT)
    assert config_from_args(build_parser().parse_args(_argv(NON_DEFAULT))) == expected
    as_resource_config = {k: list(v) if isinstance(v, tuple) else v for k, v in NON_DEFAULT.items()}
    assert ImageCrawler(**as_resource_config).crawl_config() == expected

    seen = {}

    @dg.asset
    def probe(crawler: ImageCrawler) -> None:
        seen["config"] = crawler.crawl_config()

    # The launchpad path: run config overrides what the profile built (allow_networks included).
    result = dg.materialize([probe], resources={"crawler": ImageCrawler(allow_networks=["127.0.0.0/8"])},
                            run_config={"resources": {"crawler": {"config": as_resource_config}}})
    assert result.success and seen["config"] == expected


def test_the_resource_rejects_an_unknown_http_backend():
    assert typing.get_args(typing.get_type_hints(CrawlConfig)["http_backend"]) == ("aiohttp", "httpx")
    with pytest.raises(pydantic.ValidationError, match="http_backend"):
        ImageCrawler(http_backend="curl")


def test_progress_log_reports_done_total_rate_and_eta_every_ten_seconds(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    lines: list[str] = []
    report = ProgressLog(lines.append, every_s=10.0)
    for t, done in [(0, 100), (5, 150), (10, 200), (15, 250)]:  # 100 rows resumed from a checkpoint
        clock[0] = 1000.0 + t
        report(done, 1000, {"ok": done})
    assert lines == ["crawl: 200/1000 (20.0%), 10.0 URLs/s, ETA 1m20s {'ok': 200}"]
    clock[0] = 1090.0
    report(1000, 1000, {"ok": 990, "failed_download": 10})
    report(1000, 1000, {"ok": 990, "failed_download": 10})  # the end is reported once
    assert lines[1:] == ["crawl: 1000/1000 (100.0%), 10.0 URLs/s, ETA 0s {'failed_download': 10, 'ok': 990}"]


def test_image_crawler_resource_mirrors_crawl_config_and_crawls(tmp_path, caplog):
    resource = ImageCrawler(allow_networks=["127.0.0.0/8"], image_size=64)
    assert resource.crawl_config() == CrawlConfig(allow_networks=("127.0.0.0/8",), image_size=64)
    with ImageWeb() as web:
        (tmp_path / "in.jsonl").write_text(json.dumps({"url": photo_url(web.base_url, "red", "circle", 1)}) + "\n")
        with caplog.at_level(logging.INFO, logger="t"):
            summary = resource.crawl(tmp_path / "in.jsonl", tmp_path / "out", progress_log=logging.getLogger("t"))
    assert summary.ok == 1 and summary.total == 1
    assert any(r.name == "t" and r.getMessage().startswith("crawl: 1/1 (100.0%)") for r in caplog.records)
