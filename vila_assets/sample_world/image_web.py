"""A hostile image web on 127.0.0.1: real photos plus every way an image host goes wrong.

Every response is a pure function of the request path (the query string only matters where noted), and
rendered bytes are cached, so the server stays cheap. Stateful routes (flaky, rate-limited) count hits
per full request target (path + query): give each test its own names to keep them independent.

Routes
------
``/photo/<color>/<shape>/<seed>/<W>x<H>.<jpg|png|webp>``   a photo (images.render_photo)
``/photo/<color>/<shape>/<seed>/<W>x<H>-o<3|6|8>.jpg``      stored rotated + EXIF orientation tag
``/p/<color>/<shape>/<seed>/<W>x<H>``                       extensionless JPEG; any ``?query`` is ignored
``/rgba/<color>/<shape>/<seed>/<W>x<H>.png``                RGBA PNG: opaque shape, fully transparent background
``/palette/<color>/<shape>/<seed>/<W>x<H>.png``             palette PNG with a transparent index
``/placeholder/<i>.jpg``                                    the "image not available" JPEG, same bytes for every i
``/status/<code>/<name>``                                   always that HTTP status (404, 410, 500, ...)
``/flaky/<k>/<name>.jpg``                                   503 for the first k hits, then a photo
``/ratelimit/<k>/<name>.jpg``                               429 + ``Retry-After: 1`` for the first k hits, then a photo
``/slow/<seconds>/<name>.jpg``                              sleeps, then a photo
``/drip/<seconds>/<name>.jpg``                              sends the photo in pieces spread over <seconds>
``/truncated/<name>.jpg``                                   Content-Length larger than the body, then closes
``/huge/<name>.jpg``                                        declares a 1 TB Content-Length
``/endless/<name>.jpg``                                     chunked body that never ends (capped at 256 MiB)
``/garbage/<name>.jpg``                                     random bytes served as image/jpeg
``/html/<name>.jpg``                                        an HTML page served as 200 image/jpeg
``/redirect/<n>/<rest of path>``                            n hops of 302, then ``/<rest of path>``
``/loop/<a|b>/<name>``                                      a -> b -> a -> ... (redirect loop)
``/goto/<private|metadata|ftp|file>``                       302 to http://10.0.0.1/x.jpg, the cloud metadata
                                                            address, an ftp:// and a file:// URL
``/to/<hex>``                                               302 to any URL (its UTF-8 bytes in hex)
``/robots/<directive>/<name>.jpg``                          a photo with ``X-Robots-Tag: <directive>``
``/bomb.png`` / ``/bomb.jpg``                               tiny files whose headers declare 30000x30000 px
``/pxbomb/<png|jpg|gif|webp|tif|bmp>``                      pixel bombs of every format (hostile_images.PIXEL_BOMBS)
``/bigpx/<png|webp|jpg|gif|tif>/<name>``                    a legitimate 62 MP image, just under the pixel limit
``/mode/<sample name>``                                     an image in an unusual mode (hostile_images.MODE_SAMPLES)
``/dup/exact/<i>.jpg``                                      byte-identical copies of one photo
``/dup/near/<v>.jpg``                                       that photo re-encoded at another size/quality (v = 0..3)

Faults beyond the basic ones (``k``: how many first hits fail; hits are counted per path + query):

``/gzip/<bomb|bomb-chunked|nested|endless|photo>/<name>``   ``Content-Encoding: gzip``: a 1 GiB -> 1 MB bomb with
                                                            Content-Length, the same chunked, gzip-in-gzip, an
                                                            endless gzip stream, a real photo (must decode fine)
``/deflate/<bomb|raw>/<name>``                              deflate bombs, zlib-wrapped and raw
``/br/<name>``                                              ``Content-Encoding: br`` (not decodable here)
``/reset/<k>/<name>.jpg``                                   half the body, then a TCP reset, for the first k hits
``/burst/<k>/<code>/<name>.jpg``                            HTTP <code> for the first k hits, then a photo
``/ratelimit-long/<k>/<name>.jpg``                          429 + ``Retry-After: 3600`` for the first k hits
``/ratelimit-date/<k>/<name>.jpg``                          429 + an HTTP-date Retry-After 1 s ahead
``/short-length/<name>.jpg``                                Content-Length half the body's; the rest follows 0.1 s
                                                            later (the excess poisons a kept-alive connection:
                                                            serve it from a web of its own for exact outcomes)
``/stall/<name>.jpg``                                       headers, then silence
``/empty/<name>.jpg``                                       200 with an empty body

``hostile_catalogue(base)`` lists one URL per route with the status the crawler must give it.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import io
import random
import re
import socket
import ssl
import struct
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from PIL import Image, ImageDraw

from . import hostile_images as hostile
from .hostile_images import BOMB_SIDE, bomb_jpg, bomb_png
from .images import COLORS, encode, render_photo, render_placeholder

__all__ = ["BOMB_SIDE", "ImageWeb", "bomb_jpg", "bomb_png", "fault_url", "hostile_catalogue", "photo_url"]
PRIVATE_TARGETS = {
    "private": "http://10.0.0.1/x.jpg",
    "metadata": "http://169.254.169.254/latest/meta-data",
    "ftp": "ftp://127.0.0.1/x.jpg",
    "file": "file:///etc/passwd",
}
_FMT = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_CTYPE = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


# ---------------------------------------------------------------- URL builders (used by other teams)
def photo_url(base: str, color: str, shape: str, seed: int, width: int = 640, height: int = 480,
              fmt: str = "jpg", orientation: int | None = None) -> str:
    if orientation is not None:
        if fmt != "jpg":
            raise ValueError("EXIF orientation is only served for jpg")
        return f"{base}/photo/{color}/{shape}/{seed}/{width}x{height}-o{orientation}.jpg"
    return f"{base}/photo/{color}/{shape}/{seed}/{width}x{height}.{fmt}"


def extensionless_photo_url(base: str, color: str, shape: str, seed: int, width: int = 640,
                            height: int = 480, query: str = "") -> str:
    return f"{base}/p/{color}/{shape}/{seed}/{width}x{height}" + (f"?{query}" if query else "")


def rgba_url(base: str, color: str, shape: str, seed: int = 0, width: int = 320, height: int = 240) -> str:
    return f"{base}/rgba/{color}/{shape}/{seed}/{width}x{height}.png"


def palette_url(base: str, color: str, shape: str, seed: int = 0, width: int = 320, height: int = 240) -> str:
    return f"{base}/palette/{color}/{shape}/{seed}/{width}x{height}.png"


def placeholder_url(base: str, i: int) -> str:
    return f"{base}/placeholder/{i}.jpg"


def exact_dup_url(base: str, i: int) -> str:
    return f"{base}/dup/exact/{i}.jpg"


def near_dup_url(base: str, variant: int) -> str:
    return f"{base}/dup/near/{variant}.jpg"


def fault_url(base: str, kind: str, name: str = "x", arg: object | None = None) -> str:
    """``kind`` one of status, flaky, ratelimit, slow, drip, truncated, huge, endless, garbage, html,
    redirect (arg = hops, name = target path), loop, goto (name = private|metadata|ftp|file), robots (arg = directive), bomb."""
    if kind == "bomb":
        return f"{base}/bomb.{name if name in ('png', 'jpg') else 'png'}"
    if kind == "goto":
        return f"{base}/goto/{name}"
    if kind == "loop":
        return f"{base}/loop/a/{name}"
    if kind == "redirect":
        return f"{base}/redirect/{arg}/{name.lstrip('/')}"
    if kind == "status":
        return f"{base}/status/{arg}/{name}"
    if arg is not None:
        return f"{base}/{kind}/{arg}/{name}.jpg"
    return f"{base}/{kind}/{name}.jpg"


def hostile_catalogue(base: str, tag: str = "c", timeout: float = 20.0) -> list[tuple[str, str]]:
    """(url, expected status) for every route, for a crawl with allow_networks=("127.0.0.0/8",),
    retries >= 2 and the given per-attempt ``timeout``. ``tag`` makes stateful paths unique per caller."""
    slow = round(timeout * 2 + 1, 2)
    return [
        (photo_url(base, "red", "circle", 1), "ok"),
        (photo_url(base, "green", "square", 2, 800, 600, "png"), "ok"),
        (photo_url(base, "blue", "triangle", 3, 500, 700, "webp"), "ok"),
        (photo_url(base, "yellow", "circle", 4, 640, 480, orientation=6), "ok"),
        (extensionless_photo_url(base, "red", "square", 5), "ok"),
        (extensionless_photo_url(base, "red", "square", 5, query="v=2"), "ok"),
        (rgba_url(base, "blue", "circle"), "ok"),
        (palette_url(base, "green", "triangle"), "ok"),
        (placeholder_url(base, 1), "ok"),  # a 200 image; catching placeholders is dedup's job
        (exact_dup_url(base, 0), "ok"),
        (exact_dup_url(base, 1), "ok"),
        (near_dup_url(base, 1), "ok"),
        (fault_url(base, "status", f"{tag}-404", 404), "failed_download"),
        (fault_url(base, "status", f"{tag}-410", 410), "failed_download"),
        (fault_url(base, "status", f"{tag}-500", 500), "failed_download"),
        (fault_url(base, "flaky", f"{tag}-flaky", 2), "ok"),
        (fault_url(base, "ratelimit", f"{tag}-429", 1), "ok"),
        (fault_url(base, "slow", f"{tag}-slow", slow), "failed_download"),
        (fault_url(base, "drip", f"{tag}-drip", slow), "failed_download"),
        (fault_url(base, "truncated", f"{tag}-trunc"), "failed_download"),
        (fault_url(base, "huge", f"{tag}-huge"), "failed_download"),
        (fault_url(base, "endless", f"{tag}-endless"), "failed_download"),
        (fault_url(base, "garbage", f"{tag}-garbage"), "failed_decode"),
        (fault_url(base, "html", f"{tag}-html"), "failed_decode"),
        (fault_url(base, "redirect", "photo/red/triangle/6/640x480.jpg", 3), "ok"),
        (fault_url(base, "redirect", "photo/red/triangle/6/640x480.jpg", 9), "failed_download"),
        (fault_url(base, "loop", f"{tag}-loop"), "failed_download"),
        (fault_url(base, "goto", "private"), "blocked"),
        (fault_url(base, "goto", "metadata"), "blocked"),
        (fault_url(base, "goto", "ftp"), "blocked"),
        (fault_url(base, "goto", "file"), "blocked"),
        ("http://10.0.0.1/x.jpg", "blocked"),
        ("http://169.254.169.254/latest/meta-data", "blocked"),
        ("http://[::1]:9/x.jpg", "blocked"),
        ("ftp://127.0.0.1/x.jpg", "blocked"),
        (fault_url(base, "robots", f"{tag}-noai", "noai"), "opted_out"),
        (fault_url(base, "robots", f"{tag}-noimageai", "noimageai"), "opted_out"),
        (fault_url(base, "robots", f"{tag}-all", "all"), "ok"),
        (fault_url(base, "bomb", "png"), "failed_decode"),
        (fault_url(base, "bomb", "jpg"), "failed_decode"),
        (f"{base}/pxbomb/gif", "failed_decode"),
        (f"{base}/pxbomb/webp", "failed_decode"),
        (f"{base}/pxbomb/tif", "failed_decode"),
        (f"{base}/mode/grey16.png", "ok"),
        (f"{base}/mode/float.tif", "failed_decode"),
        (f"{base}/gzip/bomb/{tag}-gz.jpg", "failed_download"),
        (f"{base}/gzip/photo/{tag}-gzphoto.jpg", "ok"),
        (f"{base}/br/{tag}-br.jpg", "failed_download"),
        (f"{base}/reset/1/{tag}-reset.jpg", "ok"),
        (f"{base}/burst/2/502/{tag}-burst.jpg", "ok"),
    ]


# ---------------------------------------------------------------- deterministic content
def _seed_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def _name_photo(name: str) -> bytes:
    """A photo chosen by hashing ``name`` (for fault routes that end in success)."""
    s = _seed_of(name)
    colors = sorted(COLORS)
    return photo_bytes(colors[s % 4], ("circle", "square", "triangle")[s % 3], s % 1000, 320, 240, "jpg", None)


@lru_cache(maxsize=4096)
def photo_bytes(color: str, shape: str, seed: int, width: int, height: int, fmt: str, orientation: int | None) -> bytes:
    img = render_photo(color, shape, seed, width, height)
    return encode(img, _FMT[fmt], quality=90, exif_orientation=orientation)


def _shape_layer(color: str, shape: str, width: int, height: int) -> Image.Image:
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    s = min(width, height) // 2
    box = (width // 2 - s // 2, height // 2 - s // 2, width // 2 + s // 2, height // 2 + s // 2)
    fill = (*COLORS[color], 255)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((box[0] + box[2]) // 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill)
    return img


@lru_cache(maxsize=256)
def rgba_bytes(color: str, shape: str, width: int, height: int) -> bytes:
    out = io.BytesIO()
    _shape_layer(color, shape, width, height).save(out, "PNG")
    return out.getvalue()


@lru_cache(maxsize=256)
def palette_bytes(color: str, shape: str, width: int, height: int) -> bytes:
    layer = _shape_layer(color, shape, width, height)
    pal = Image.new("P", layer.size, 0)
    pal.putpalette([0, 0, 0, *COLORS[color]] + [0] * (256 - 2) * 3)
    pal.paste(1, mask=layer.getchannel("A"))
    out = io.BytesIO()
    pal.save(out, "PNG", transparency=0)
    return out.getvalue()


@lru_cache(maxsize=1)
def placeholder_bytes() -> bytes:
    return encode(render_placeholder(), "JPEG", quality=85)


@lru_cache(maxsize=8)
def near_dup_bytes(variant: int) -> bytes:
    """variant 0 is the exact-dup photo; 1..3 the same picture resized and re-encoded."""
    img = render_photo("blue", "circle", 7, 640, 480)
    sizes = {0: (640, 480, 90), 1: (560, 420, 60), 2: (480, 360, 40), 3: (600, 450, 75)}
    w, h, q = sizes[variant]
    if (w, h) != img.size:
        img = img.resize((w, h), Image.Resampling.BICUBIC)
    return encode(img, "JPEG", quality=q)


@lru_cache(maxsize=64)
def garbage_bytes(name: str) -> bytes:
    return random.Random(name).randbytes(4096)


def html_bytes(name: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><title>{name}</title></head>"
            f"<body><p>This is not the image you are looking for.</p></body></html>").encode()


# ---------------------------------------------------------------- routing (pure: path + hit count -> plan)
def plan_response(path: str, count: int = 1 << 30) -> tuple:
    """What to serve for ``path`` on its ``count``-th hit. Kinds: ("send", code, body, ctype, headers),
    ("slow", seconds, body), ("drip", seconds, body), ("truncated", body), ("huge", b""), ("endless",).
    Calling it renders and caches the bytes, which is how ``ImageWeb.warm`` pre-renders."""
    parts = path.strip("/").split("/")
    head = parts[0]
    jpeg = "image/jpeg"
    if head in ("photo", "p") and len(parts) == 5 and parts[1] in COLORS:
        color, shape, seed, last = parts[1:]
        if head == "p":
            m = re.fullmatch(r"(\d+)x(\d+)", last)
            if m:
                return ("send", 200, photo_bytes(color, shape, int(seed), int(m[1]), int(m[2]), "jpg", None), jpeg, {})
        else:
            m = re.fullmatch(r"(\d+)x(\d+)(?:-o([368]))?\.(jpg|png|webp)", last)
            if m:
                o = int(m[3]) if m[3] else None
                body = photo_bytes(color, shape, int(seed), int(m[1]), int(m[2]), m[4], o)
                return ("send", 200, body, _CTYPE[m[4]], {})
    elif head in ("rgba", "palette") and len(parts) == 5 and parts[1] in COLORS:
        m = re.fullmatch(r"(\d+)x(\d+)\.png", parts[4])
        if m:
            fn = rgba_bytes if head == "rgba" else palette_bytes
            return ("send", 200, fn(parts[1], parts[2], int(m[1]), int(m[2])), "image/png", {})
    elif head == "placeholder":
        return ("send", 200, placeholder_bytes(), jpeg, {})
    elif head == "status" and len(parts) >= 2 and parts[1].isdigit():
        return ("send", int(parts[1]), b"error page\n", "text/plain", {})
    elif head in ("flaky", "ratelimit") and len(parts) == 3 and parts[1].isdigit():
        photo = _name_photo(parts[2])
        if count <= int(parts[1]):
            if head == "flaky":
                return ("send", 503, b"try again\n", "text/plain", {})
            return ("send", 429, b"slow down\n", "text/plain", {"Retry-After": "1"})
        return ("send", 200, photo, jpeg, {})
    elif head in ("slow", "drip") and len(parts) == 3:
        return (head, float(parts[1]), _name_photo(parts[2]))
    elif head == "truncated":
        return ("truncated", _name_photo(path))
    elif head == "huge":
        return ("huge", b"")
    elif head == "endless":
        return ("endless",)
    elif head == "garbage":
        return ("send", 200, garbage_bytes(path), jpeg, {})
    elif head == "html":
        return ("send", 200, html_bytes(path), jpeg, {})
    elif head == "redirect" and len(parts) >= 3 and parts[1].isdigit():
        n, rest = int(parts[1]), "/".join(parts[2:])
        return _redirect(f"/redirect/{n - 1}/{rest}" if n > 1 else f"/{rest}")
    elif head == "loop" and len(parts) == 3:
        return _redirect(f"/loop/{'b' if parts[1] == 'a' else 'a'}/{parts[2]}")
    elif head == "goto" and len(parts) == 2 and parts[1] in PRIVATE_TARGETS:
        return _redirect(PRIVATE_TARGETS[parts[1]])
    elif head == "robots" and len(parts) == 3:
        return ("send", 200, _name_photo(parts[2]), jpeg, {"X-Robots-Tag": parts[1]})
    elif path == "/bomb.png":
        return ("send", 200, bomb_png(), "image/png", {})
    elif path == "/bomb.jpg":
        return ("send", 200, bomb_jpg(), jpeg, {})
    elif head == "dup" and len(parts) == 3:
        if parts[1] == "exact":
            return ("send", 200, near_dup_bytes(0), jpeg, {})
        m = re.fullmatch(r"([0-3])\.jpg", parts[2])
        if parts[1] == "near" and m:
            return ("send", 200, near_dup_bytes(int(m[1])), jpeg, {})
    return _plan_hostile(head, parts, count) or _plan_encoded(head, parts) or ("send", 404, b"not found\n", "text/plain", {})


_EXT_CTYPE = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "tif": "image/tiff",
              "bmp": "image/bmp"}


def _ctype(name: str) -> str:
    return _EXT_CTYPE.get(name.rsplit(".", 1)[-1], "application/octet-stream")


def _plan_hostile(head: str, parts: list[str], count: int) -> tuple | None:
    """Unusual images and the faults added for the fault web (see the module docstring)."""
    if head == "mode" and len(parts) == 2:
        with contextlib.suppress(KeyError):
            return ("send", 200, hostile.mode_sample_bytes(parts[1]), _ctype(parts[1]), {})
    elif head == "pxbomb" and len(parts) == 2 and parts[1] in hostile.PIXEL_BOMBS:
        return ("send", 200, hostile.PIXEL_BOMBS[parts[1]][0](), _ctype(parts[1]), {})
    elif head == "bigpx" and len(parts) == 3 and parts[1] in ("png", "webp", "jpg", "gif", "tif"):
        return ("send", 200, hostile.near_limit_image(parts[1]), _ctype(parts[1]), {})
    elif head == "reset" and len(parts) == 3 and parts[1].isdigit():
        return ("reset", _name_photo(parts[2])) if count <= int(parts[1]) else ("send", 200, _name_photo(parts[2]), "image/jpeg", {})
    elif head == "burst" and len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
        if count <= int(parts[1]):
            return ("send", int(parts[2]), b"busy\n", "text/plain", {})
        return ("send", 200, _name_photo(parts[3]), "image/jpeg", {})
    elif head in ("ratelimit-long", "ratelimit-date") and len(parts) == 3 and parts[1].isdigit():
        if count > int(parts[1]):
            return ("send", 200, _name_photo(parts[2]), "image/jpeg", {})
        after = "3600" if head == "ratelimit-long" else email.utils.formatdate(time.time() + 1, usegmt=True)
        return ("send", 429, b"slow down\n", "text/plain", {"Retry-After": after})
    elif head == "short-length" and len(parts) == 2:
        return ("short-length", _name_photo(parts[1]))
    elif head == "to" and len(parts) == 2:
        with contextlib.suppress(ValueError):
            return _redirect(bytes.fromhex(parts[1]).decode("utf-8"))
    elif head == "stall" and len(parts) == 2:
        return ("stall",)
    elif head == "empty" and len(parts) == 2:
        return ("send", 200, b"", "image/jpeg", {})
    return None


def _plan_encoded(head: str, parts: list[str]) -> tuple | None:
    """Bodies with a Content-Encoding: compression bombs and one honest gzip-encoded photo."""
    gzip = {"Content-Encoding": "gzip"}
    if head == "gzip" and len(parts) == 3:
        kind, name = parts[1], parts[2]
        if kind == "bomb":
            return ("send", 200, hostile.compression_bomb("gzip"), "image/jpeg", gzip)
        if kind == "bomb-chunked":
            bomb = hostile.compression_bomb("gzip")
            return ("chunked", lambda: (bomb[i : i + 65536] for i in range(0, len(bomb), 65536)), gzip)
        if kind == "nested":
            return ("send", 200, _nested_bomb(), "image/jpeg", {"Content-Encoding": "gzip, gzip"})
        if kind == "endless":
            return ("chunked", hostile.endless_gzip, gzip)
        if kind == "photo":
            return ("send", 200, hostile.gzip_bytes(_name_photo(name)), "image/jpeg", gzip)
    elif head == "deflate" and len(parts) == 3 and parts[1] in ("bomb", "raw"):
        coding = "deflate" if parts[1] == "bomb" else "raw-deflate"
        return ("send", 200, hostile.compression_bomb(coding), "image/jpeg", {"Content-Encoding": "deflate"})
    elif head == "br" and len(parts) == 2:
        return ("send", 200, b"\x1b" + bytes(200), "image/jpeg", {"Content-Encoding": "br"})
    return None


@lru_cache(maxsize=1)
def _nested_bomb() -> bytes:
    return hostile.gzip_bytes(hostile.compression_bomb("gzip"))


def _redirect(location: str) -> tuple:
    return ("send", 302, b"", "text/plain", {"Location": location})


# ---------------------------------------------------------------- server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body go out as written, no 40 ms delayed-ACK stalls
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()  # a client refusing our certificate ends the request here
            self.request.settimeout(None)
        super().setup()
        # A send buffer big enough for a whole photo: sendall() then finishes without blocking, so a
        # busy server thread never waits to re-take the GIL mid-body while the client drains slowly.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        web = self.server.web
        count = web._hit(self.path, dict(self.headers.items()))
        if web.latency_s:
            time.sleep(web.latency_for(self.path))
        try:
            self._route(urlsplit(self.path).path, count)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, code: int, body: bytes = b"", ctype: str = "image/jpeg", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _route(self, path: str, count: int) -> None:
        plan = plan_response(path, count)
        kind = plan[0]
        if kind == "send":
            _, code, body, ctype, headers = plan
            return self._send(code, body, ctype, headers)
        if kind == "slow":
            time.sleep(plan[1])
            return self._send(200, plan[2])
        if kind == "drip":
            return self._drip(plan[2], plan[1])
        if kind == "endless":
            return self._endless()
        if kind == "chunked":
            return self._chunked(plan[1](), plan[2])
        if kind == "reset":
            return self._reset(plan[1])
        if kind == "short-length":
            return self._short_length(plan[1])
        if kind == "stall":
            return self._stall()
        # "truncated" / "huge": a Content-Length the body never reaches, then hang up.
        body = plan[1]
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(10**12 if kind == "huge" else len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        return None

    def _drip(self, body: bytes, seconds: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        pieces = 20
        step = max(1, len(body) // pieces)
        for i in range(0, len(body), step):
            self.wfile.write(body[i : i + step])
            self.wfile.flush()
            time.sleep(seconds / pieces)
            if self.server.web._stopping.is_set():
                break

    def _chunked(self, pieces, headers: dict) -> None:
        """A chunked body from ``pieces`` (no Content-Length), until they end, the client hangs up, or
        256 MiB went out."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        sent = 0
        for piece in pieces:
            if self.server.web._stopping.is_set() or sent > 256 << 20:
                break
            if piece:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
        else:
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _reset(self, body: bytes) -> None:
        """Half the body, then a TCP reset (SO_LINGER 0), not a clean close."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.server.reset_requests.add(id(self.request))  # closed without a FIN first: an RST
        self.close_connection = True

    def _short_length(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body) // 2))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        time.sleep(0.1)  # the declared response is complete on the client before the excess comes
        self.wfile.write(body[len(body) // 2 :])
        self.close_connection = True

    def _stall(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.flush()
        self.server.web._stopping.wait(120)
        self.close_connection = True

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"\xff" * 65536
        frame = f"{len(block):x}\r\n".encode() + block + b"\r\n"
        self.wfile.write(f"{3:x}\r\n".encode() + b"\xff\xd8\xff" + b"\r\n")
        for _ in range(256 * 16):  # 256 MiB at most; the crawler must stop long before
            if self.server.web._stopping.is_set():
                break
            self.wfile.write(frame)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    web: ImageWeb

    def __init__(self, address, handler, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.reset_requests: set[int] = set()
        super().__init__(address, handler)

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is not None:  # the handshake happens in the request's own thread (Handler.setup)
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def shutdown_request(self, request) -> None:
        if id(request) in self.reset_requests:
            self.reset_requests.discard(id(request))
            self.close_request(request)  # SO_LINGER 0 and no shutdown(): the peer gets an RST
            return
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        # Clients hanging up (timeouts, aborted oversized bodies) are part of the game, not errors.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError, OSError)):
            super().handle_error(request, client_address)


class ImageWeb:
    """Serve the hostile image web on 127.0.0.1:<free port> from a background thread.

    ``latency_s``: seconds added to every request; a (lo, hi) pair gives each path a fixed latency in
    that range. ``hits(path)`` counts requests for a path (with its query string, if any),
    ``hit_times(path)`` says when they came, ``last_headers(path)`` what the last one carried.
    """

    def __init__(self, latency_s: float | tuple[float, float] = 0.0, host: str = "127.0.0.1",
                 tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        """``tls``: a server context (``sample_world.tls``) to serve https instead of http; ``port``: 0 for
        any free one."""
        self.latency_s = latency_s
        self.host = host
        self.port = port
        self.tls = tls
        self._hits: dict[str, int] = {}
        self._headers: dict[str, dict[str, str]] = {}
        self._times: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def latency_for(self, path: str) -> float:
        if isinstance(self.latency_s, tuple):
            lo, hi = self.latency_s
            return lo + (hi - lo) * (_seed_of(path) % 1000) / 999
        return float(self.latency_s)

    def _hit(self, path: str, headers: dict[str, str] | None = None) -> int:
        with self._lock:
            n = self._hits.get(path, 0) + 1
            self._hits[path] = n
            self._times.setdefault(path, []).append(time.monotonic())
            if headers is not None:
                self._headers[path] = headers
            return n

    @staticmethod
    def _target(path: str) -> str:
        if path.startswith("http"):
            s = urlsplit(path)
            path = s.path + (f"?{s.query}" if s.query else "")
        return path

    def hits(self, path: str) -> int:
        """Requests seen for ``path`` (a path or a full URL on this server)."""
        with self._lock:
            return self._hits.get(self._target(path), 0)

    def hit_times(self, path: str) -> list[float]:
        """``time.monotonic()`` of every request for ``path`` (a path or a full URL), in order."""
        with self._lock:
            return list(self._times.get(self._target(path), []))

    def last_headers(self, path: str) -> dict[str, str] | None:
        """The request headers of the last request for ``path`` (a path or a full URL)."""
        with self._lock:
            return self._headers.get(self._target(path))

    def warm(self, urls) -> None:
        """Render and cache the bytes behind ``urls`` (this server's URLs) before timing or testing."""
        for url in urls:
            s = urlsplit(url)
            if s.scheme in ("http", "https") and f"{s.scheme}://{s.netloc}" == self.base_url:
                plan = plan_response(s.path)
                if plan[0] == "chunked":
                    next(iter(plan[1]()), None)  # renders what the pieces are cut from

    def total_hits(self) -> int:
        with self._lock:
            return sum(self._hits.values())

    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler, self.tls)
        self._server.web = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="image-web", daemon=True
        )
        self._thread.start()
        scheme = "https" if self.tls is not None else "http"
        self.base_url = f"{scheme}://{self.host}:{self._server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> ImageWeb:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
