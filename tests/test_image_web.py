"""The hostile image web itself: deterministic, stateful only where documented, stops promptly."""

from __future__ import annotations

import gzip
import http.client
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


def test_hostile_routes_are_small_on_the_wire_and_say_what_they_are():
    from vila_assets.sample_world import hostile_images as hostile

    with ImageWeb() as web:
        for fmt in hostile.PIXEL_BOMBS:
            code, body, _ = _get(f"{web.base_url}/pxbomb/{fmt}")
            assert code == 200 and len(body) < 200_000, fmt
        code, body, headers = _get(f"{web.base_url}/gzip/bomb/w.jpg")
        assert (code, headers["Content-Encoding"]) == (200, "gzip") and len(body) < 2_000_000
        assert gzip.decompress(_get(f"{web.base_url}/gzip/photo/w.jpg")[1])[:3] == b"\xff\xd8\xff"
        assert _get(f"{web.base_url}/mode/grey16.png")[1] == hostile.mode_sample_bytes("grey16.png")


def test_burst_and_reset_routes_fail_their_first_hits_then_serve():
    with ImageWeb() as web:
        assert [_get(f"{web.base_url}/burst/2/502/b.jpg")[0] for _ in range(3)] == [502, 502, 200]
        with pytest.raises((ConnectionResetError, http.client.IncompleteRead, urllib.error.URLError)):
            _get(f"{web.base_url}/reset/1/r.jpg")
        assert _get(f"{web.base_url}/reset/1/r.jpg")[0] == 200
        assert web.hits("/reset/1/r.jpg") == 2 and len(web.hit_times("/burst/2/502/b.jpg")) == 3


def test_to_route_redirects_anywhere_and_headers_are_recorded():
    with ImageWeb() as web:
        target = "http://10.0.0.1/x.jpg"
        request = urllib.request.Request(f"{web.base_url}/to/{target.encode().hex()}", headers={"X-Probe": "1"})
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(request, timeout=10)
        assert caught.value.code == 302 and caught.value.headers["Location"] == target
        assert web.last_headers(f"/to/{target.encode().hex()}")["X-Probe"] == "1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_tls_web_serves_with_the_test_ca_and_its_certificates_fail_as_designed(tmp_path):
    import ssl

    from vila_assets.sample_world.tls import TestPki

    pki = TestPki(tmp_path)
    with ImageWeb(tls=pki.server_context("valid")) as good, ImageWeb(tls=pki.server_context("expired")) as old:
        assert good.base_url.startswith("https://127.0.0.1:")
        with urllib.request.urlopen(placeholder_url(good.base_url, 1), context=pki.client_context(), timeout=10) as r:
            assert r.status == 200 and r.read()[:3] == b"\xff\xd8\xff"
        with pytest.raises(urllib.error.URLError) as caught:
            urllib.request.urlopen(placeholder_url(old.base_url, 1), context=pki.client_context(), timeout=10)
        assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
        assert old.total_hits() == 0
