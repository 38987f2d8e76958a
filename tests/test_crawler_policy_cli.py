"""URL policy, input formats and the CLI entry point."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vila_assets.core.crawl import Blocked, CrawlConfig, UrlPolicy, crawl
from vila_assets.crawl_cli import main
from vila_assets.sample_world.image_web import ImageWeb, photo_url


@pytest.mark.parametrize(
    "address, why",
    [("10.1.2.3", "private"), ("192.168.0.1", "private"), ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"),
     ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("::1", "loopback"), ("fe80::1", "link-local"),
     ("::ffff:10.0.0.1", "private"), ("100.64.0.1", "not globally routable"), ("240.0.0.1", "private|reserved")],
)
def test_policy_blocks_non_public_addresses(address, why):
    with pytest.raises(Blocked, match=why):
        UrlPolicy().check_address(ipaddress.ip_address(address))


def test_policy_allows_public_and_allow_listed_addresses():
    public, private = "93.184.216.34", "10.9.9.9"
    assert asyncio.run(UrlPolicy().vet(f"http://{public}/a.jpg")).address == ipaddress.ip_address(public)
    with pytest.raises(Blocked, match="private"):
        asyncio.run(UrlPolicy().vet(f"http://{private}/a.jpg"))
    allowing = UrlPolicy(("10.0.0.0/8",))
    assert asyncio.run(allowing.vet(f"http://{private}/a.jpg")).address == ipaddress.ip_address(private)
    with pytest.raises(Blocked, match="private"):  # the allow list opens that network only
        allowing.check_address(ipaddress.ip_address("192.168.0.1"))


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "data:image/png;base64,AA", "gopher://x/"])
def test_policy_only_allows_http_and_https(url):
    with pytest.raises(Blocked, match="blocked"):
        UrlPolicy().parse(url)


def test_policy_resolves_names_and_blocks_if_any_address_is_private():
    # "localhost" resolves through getaddrinfo (no network needed) to loopback.
    with pytest.raises(Blocked, match="loopback"):
        asyncio.run(UrlPolicy().vet("http://localhost:1/x.jpg"))
    target = asyncio.run(UrlPolicy(("127.0.0.0/8", "::1/128")).vet("http://localhost:8080/x.jpg"))
    assert target.address.is_loopback and target.host_header == "localhost:8080"


def test_crawler_blocks_loopback_without_allow_network_and_never_connects(tmp_path):
    with ImageWeb() as web:
        src = tmp_path / "urls.jsonl"
        src.write_text(json.dumps({"url": photo_url(web.base_url, "red", "circle", 1)}) + "\n")
        summary = crawl(src, tmp_path / "out", CrawlConfig())
        assert web.total_hits() == 0
    row = pq.read_table(tmp_path / "out" / "samples.parquet").to_pylist()[0]
    assert summary.counts["blocked"] == 1
    assert row["status"] == "blocked" and row["error"] == "blocked: 127.0.0.1 is loopback"


def test_cli_crawls_parquet_with_keys_and_captions(tmp_path, capsys):
    with ImageWeb() as web:
        rows = [{"key": 7, "url": photo_url(web.base_url, "blue", "square", 2), "caption": "a photo of a blue square"},
                {"key": 8, "url": f"{web.base_url}/status/404/x", "caption": None}]
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
        rc = main([str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--allow-network", "127.0.0.0/8",
                   "--image-size", "128", "--quiet"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["counts"]["ok"] == 1 and report["counts"]["failed_download"] == 1
    out = pq.read_table(tmp_path / "out" / "samples.parquet").to_pylist()
    assert [r["key"] for r in out] == ["7", "8"]
    assert out[0]["caption"] == "a photo of a blue square" and out[1]["caption"] is None
    assert min(out[0]["width"], out[0]["height"]) == 128


def test_cli_rejects_bad_input_with_a_message(tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text('{"link": "http://x/"}\n')
    assert main([str(tmp_path / "in.jsonl"), str(tmp_path / "out")]) == 1
    assert "url" in capsys.readouterr().err


def test_crawler_filters_by_min_size_and_aspect_ratio(tmp_path):
    with ImageWeb() as web:
        urls = [photo_url(web.base_url, "red", "circle", 1, 200, 150), photo_url(web.base_url, "red", "circle", 1, 900, 200),
                photo_url(web.base_url, "red", "circle", 1, 640, 480)]
        (tmp_path / "in.jsonl").write_text("".join(json.dumps({"url": u}) + "\n" for u in urls))
        crawl(tmp_path / "in.jsonl", tmp_path / "out",
              CrawlConfig(allow_networks=("127.0.0.0/8",), min_size=180, max_aspect_ratio=3.0))
    out = pq.read_table(tmp_path / "out" / "samples.parquet").to_pylist()
    assert [r["status"] for r in out] == ["filtered", "filtered", "ok"]
    assert out[0]["error"].startswith("too small") and out[1]["error"].startswith("aspect ratio")
