"""The hostile image web itself: deterministic, stateful only where documented, stops promptly."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from vila_assets.sample_world.image_web import ImageWeb, hostile_catalogue, placeholder_url


def _get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_image_web_is_deterministic_and_counts_hits():
    with ImageWeb() as a, ImageWeb() as b:
        assert _get(placeholder_url(a.base_url, 1))[1] == _get(placeholder_url(b.base_url, 2))[1]
        assert a.hits("/placeholder/1.jpg") == 1
        code, _, headers = _get(f"{a.base_url}/ratelimit/1/t.jpg")
        assert code == 429 and headers["Retry-After"] == "1"
        assert _get(f"{a.base_url}/ratelimit/1/t.jpg")[0] == 200


def test_image_web_stops_promptly_even_with_a_slow_request_in_flight():
    web = ImageWeb()
    base = web.start()
    import threading

    def slow_client():
        try:
            _get(f"{base}/slow/30/x.jpg")
        except OSError:  # the server going away under it is the point of this test
            pass

    threading.Thread(target=slow_client, daemon=True).start()
    time.sleep(0.2)
    t = time.monotonic()
    web.stop()
    assert time.monotonic() - t < 5


def test_catalogue_covers_every_sample_status():
    statuses = {s for _, s in hostile_catalogue("http://127.0.0.1:1")}
    assert statuses == {"ok", "failed_download", "failed_decode", "opted_out", "blocked"}


@pytest.mark.parametrize("path", ["/bomb.png", "/bomb.jpg"])
def test_bombs_are_small_on_the_wire(path):
    with ImageWeb() as web:
        code, body, _ = _get(web.base_url + path)
    assert code == 200 and len(body) < 200_000
