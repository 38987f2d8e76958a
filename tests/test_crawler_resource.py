"""The Dagster resource is configuration only: it builds a CrawlConfig and calls the core."""

from __future__ import annotations

import json
import logging

from vila_assets.core.crawl import CrawlConfig
from vila_assets.resources.crawler import ImageCrawler
from vila_assets.sample_world.image_web import ImageWeb, photo_url


def test_image_crawler_resource_mirrors_crawl_config_and_crawls(tmp_path):
    resource = ImageCrawler(allow_networks=["127.0.0.0/8"], image_size=64)
    assert resource.crawl_config() == CrawlConfig(allow_networks=("127.0.0.0/8",), image_size=64)
    with ImageWeb() as web:
        (tmp_path / "in.jsonl").write_text(json.dumps({"url": photo_url(web.base_url, "red", "circle", 1)}) + "\n")
        summary = resource.crawl(tmp_path / "in.jsonl", tmp_path / "out", progress_log=logging.getLogger("t"))
    assert summary.ok == 1 and summary.total == 1
