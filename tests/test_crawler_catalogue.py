"""The crawler against every route of the hostile image web (one shared crawl, many assertions)."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vila_assets.core.crawl import SAMPLE_STATUSES, CrawlConfig, crawl, phash_distance
from vila_assets.sample_world.image_web import ImageWeb, hostile_catalogue

TIMEOUT = 2.0
CONFIG = CrawlConfig(
    timeout=TIMEOUT, retries=2, backoff_base=0.05, allow_networks=("127.0.0.0/8",), concurrency=32
)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Delegates to the crawler's own transport and remembers every URL actually sent, with the host
    replaced by the address the connection is pinned to (what the socket really connects to)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = request.extensions.get("connect_address")
        self.sent.append(str(request.url.copy_with(host=address) if address else request.url))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    from vila_assets.core.crawl.transport import AiohttpTransport

    tmp = tmp_path_factory.mktemp("catalogue")
    with ImageWeb() as web:
        catalogue = hostile_catalogue(web.base_url, tag="cat", timeout=TIMEOUT)
        web.warm(url for url, _ in catalogue)
        src = tmp / "urls.jsonl"
        src.write_text("".join(json.dumps({"url": u, "caption": f"c{i}"}) + "\n" for i, (u, _) in enumerate(catalogue)))
        transport = RecordingTransport(AiohttpTransport(32, TIMEOUT, TIMEOUT))
        summary = crawl(src, tmp / "out", CONFIG, transport=transport)
        rows = pq.read_table(tmp / "out" / "samples.parquet").to_pylist()
        hits = {url: web.hits(url) for url, _ in catalogue}
    by_url = {r["url"]: r for r in rows}
    return {"catalogue": catalogue, "rows": rows, "by_url": by_url, "summary": summary, "sent": transport.sent,
            "hits": hits, "out": tmp / "out"}


def _row(crawled, fragment: str) -> dict:
    matches = [r for r in crawled["rows"] if fragment in r["url"]]
    assert matches, fragment
    return matches[0]


def _decode(row) -> Image.Image:
    return Image.open(io.BytesIO(row["image"])).convert("RGB")


def test_crawler_gives_one_row_per_url_in_order_with_the_expected_status(crawled):
    rows, catalogue = crawled["rows"], crawled["catalogue"]
    assert [r["url"] for r in rows] == [u for u, _ in catalogue]
    assert [r["key"] for r in rows] == [str(i) for i in range(len(catalogue))]  # missing key -> row index
    assert [r["caption"] for r in rows] == [f"c{i}" for i in range(len(catalogue))]
    got = [(r["url"], r["status"], r["error"]) for r in rows]
    assert [s for _, s, _ in got] == [s for _, s in catalogue], got
    assert all(r["status"] in SAMPLE_STATUSES for r in rows)
    assert crawled["summary"].total == len(catalogue)
    assert sum(crawled["summary"].counts.values()) == len(catalogue)
    assert not (crawled["out"] / ".checkpoint").exists()


def test_crawler_ok_rows_carry_a_jpeg_hashes_and_sizes(crawled):
    for r in crawled["rows"]:
        if r["status"] == "ok":
            assert r["image"][:3] == b"\xff\xd8\xff"
            assert min(r["width"], r["height"]) == min(336, r["orig_width"], r["orig_height"])
            assert len(r["sha256"]) == 64 and len(r["phash"]) == 16
        else:
            assert r["image"] is None and r["error"]


def test_crawler_retries_503_until_it_succeeds(crawled):
    row = _row(crawled, "/flaky/2/")
    assert row["status"] == "ok" and row["attempts"] == 3
    assert crawled["hits"][row["url"]] == 3


def test_crawler_retries_429_after_retry_after(crawled):
    row = _row(crawled, "/ratelimit/1/")
    assert row["status"] == "ok" and row["attempts"] == 2


def test_crawler_does_not_retry_permanent_errors(crawled):
    for code in (404, 410):
        row = _row(crawled, f"/status/{code}/")
        assert (row["attempts"], row["error"], row["http_status"]) == (1, f"http {code}", code)
    row = _row(crawled, "/status/500/")
    assert row["attempts"] == 3 and row["error"] == "http 500 after 3 attempts"


def test_crawler_deadline_is_total_per_attempt_so_slow_and_dripping_bodies_time_out(crawled):
    for frag in ("/slow/", "/drip/"):
        row = _row(crawled, frag)
        assert row["status"] == "failed_download" and row["error"] == "timeout after 3 attempts"


def test_crawler_caps_body_size_and_flags_truncation(crawled):
    assert _row(crawled, "/huge/")["error"].startswith("too large: content-length")
    assert _row(crawled, "/endless/")["error"].startswith("too large: body")
    assert _row(crawled, "/truncated/")["error"] == "truncated body after 3 attempts"


def test_crawler_sniffs_content_not_content_type(crawled):
    assert _row(crawled, "/html/")["error"] == "not an image (html)"
    assert _row(crawled, "/garbage/")["error"].startswith("not an image")
    assert _row(crawled, "/800x600.png")["status"] == "ok"
    assert _row(crawled, "/500x700.webp")["status"] == "ok"
    assert _row(crawled, "/p/red/square/5/640x480?v=2")["status"] == "ok"  # extensionless + query


def test_crawler_rejects_decompression_bombs_before_decoding(crawled):
    for frag in ("/bomb.png", "/bomb.jpg"):
        row = _row(crawled, frag)
        assert row["status"] == "failed_decode"
        assert row["error"] == "decompression bomb: 30000x30000 px"


def test_crawler_follows_redirects_but_stops_loops_and_long_chains(crawled):
    assert _row(crawled, "/redirect/3/")["status"] == "ok"
    assert _row(crawled, "/redirect/9/")["error"] == "too many redirects (> 5)"
    assert _row(crawled, "/loop/")["error"].startswith("redirect loop")


def test_crawler_blocks_private_targets_without_connecting(crawled):
    assert _row(crawled, "/goto/private")["error"] == "blocked: 10.0.0.1 is private"
    assert _row(crawled, "/goto/metadata")["error"] == "blocked: 169.254.169.254 is link-local"
    assert crawled["by_url"]["http://[::1]:9/x.jpg"]["error"] == "blocked: ::1 is loopback"
    sent_hosts = {httpx.URL(u).host for u in crawled["sent"]}
    assert sent_hosts == {"127.0.0.1"}, sent_hosts  # nothing ever went to 10.0.0.1, 169.254.169.254, ::1


def test_crawler_honours_x_robots_tag_opt_out(crawled):
    assert _row(crawled, "/robots/noai/")["status"] == "opted_out"
    assert _row(crawled, "/robots/noimageai/")["status"] == "opted_out"
    assert _row(crawled, "/robots/all/")["status"] == "ok"


def test_crawler_applies_exif_orientation(crawled):
    row = _row(crawled, "-o6.jpg")  # stored as a 480x640 portrait plus "rotate 90" in EXIF
    assert (row["orig_width"], row["orig_height"]) == (640, 480)
    assert (row["width"], row["height"]) == (448, 336)
    # Pixels, not just sizes: compare with the upright render, scaled the same way.
    from vila_assets.sample_world.images import render_photo

    want = np.asarray(render_photo("yellow", "circle", 4, 640, 480).resize((448, 336)), dtype=np.float32)
    got = np.asarray(_decode(row), dtype=np.float32)
    wrong = np.asarray(render_photo("yellow", "circle", 4, 640, 480).rotate(180).resize((448, 336)), dtype=np.float32)
    assert np.abs(got - want).mean() < 12 < np.abs(got - wrong).mean()


def test_crawler_flattens_transparency_onto_white(crawled):
    for frag in ("/rgba/", "/palette/"):
        img = np.asarray(_decode(_row(crawled, frag)))
        corner = img[:10, :10].reshape(-1, 3).mean(axis=0)
        assert (corner > 245).all(), (frag, corner)
        centre = img[img.shape[0] // 2, img.shape[1] // 2]
        assert centre.min() < 200  # the shape itself stays coloured


def test_crawler_exact_duplicates_share_sha256_and_near_duplicates_share_phash(crawled):
    a, b = _row(crawled, "/dup/exact/0"), _row(crawled, "/dup/exact/1")
    near = _row(crawled, "/dup/near/1")
    assert a["sha256"] == b["sha256"] and a["phash"] == b["phash"]
    assert near["sha256"] != a["sha256"]
    assert phash_distance(near["phash"], a["phash"]) <= 6
    other = _row(crawled, "/photo/red/circle/1/")
    assert phash_distance(other["phash"], a["phash"]) > 10
