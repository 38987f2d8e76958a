"""Imaging in isolation: sniffing, bomb guard, reduced decode, orientation, flattening."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vila_assets.core.crawl.imaging import ImageSpec, phash_distance, process_image, sniff
from vila_assets.sample_world import image_web as web
from vila_assets.sample_world.images import encode, render_photo


@pytest.mark.parametrize("fmt, name", [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP"), ("GIF", "GIF"), ("BMP", "BMP")])
def test_sniff_recognises_formats_by_magic_bytes(fmt, name):
    assert sniff(encode(render_photo("red", "circle", 0, 64, 48), fmt)) == name


def test_html_and_garbage_are_not_images():
    assert process_image(web.html_bytes("x"), ImageSpec())["error"] == "not an image (html)"
    assert process_image(b"", ImageSpec())["error"] == "empty body"
    assert process_image(web.garbage_bytes("x"), ImageSpec())["error"] == "not an image (unknown format)"


def test_bomb_is_refused_from_the_header_with_our_own_limit():
    small_bomb = encode(Image.new("L", (3000, 3000)), "PNG")
    out = process_image(small_bomb, ImageSpec(max_pixels=1_000_000))
    assert out["status"] == "failed_decode" and out["error"] == "decompression bomb: 3000x3000 px"


def test_big_jpeg_uses_reduced_decode_and_keeps_the_short_side(monkeypatch):
    from vila_assets.core.crawl import imaging

    decoded = []
    real = imaging.simplejpeg.decode_jpeg

    def spy(data, **kwargs):
        pixels = real(data, **kwargs)
        decoded.append((kwargs, pixels.shape))
        return pixels

    monkeypatch.setattr(imaging.simplejpeg, "decode_jpeg", spy)
    out = process_image(encode(render_photo("green", "square", 1, 2000, 1500), "JPEG"), ImageSpec(image_size=336))
    # 2000x1500 at 2/8 would be 375 px short: the DCT decode stops at 1/4 of the pixels, not at Pillow's 1/2.
    [(kwargs, shape)] = decoded
    assert kwargs["min_height"] == kwargs["min_width"] == 336
    assert shape == (375, 500, 3)
    assert (out["width"], out["height"], out["orig_width"], out["orig_height"]) == (448, 336, 2000, 1500)


def test_jpegs_libjpeg_turbo_cannot_convert_fall_back_to_pillow():
    """CMYK JPEGs (print workflows, common in web crawls) and greyscale ones still come out as RGB."""
    photo = render_photo("red", "circle", 4, 800, 600)
    cmyk = encode(photo.convert("CMYK"), "JPEG", 90)
    grey = encode(photo.convert("L"), "JPEG", 90)
    for data in (cmyk, grey):
        out = process_image(data, ImageSpec(image_size=300))
        assert out["status"] == "ok", out["error"]
        got = Image.open(io.BytesIO(out["image"]))
        assert (got.mode, got.size) == ("RGB", (400, 300))
    # The CMYK fallback keeps the colours (Pillow's Adobe-inverted CMYK handling), not a negative.
    got = np.asarray(Image.open(io.BytesIO(process_image(cmyk, ImageSpec(image_size=300))["image"])), dtype=np.float32)
    want = np.asarray(photo.resize((400, 300)), dtype=np.float32)
    assert np.abs(got - want).mean() < 12


def test_progressive_jpeg_decodes_like_baseline():
    photo = render_photo("blue", "square", 5, 1280, 960)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90, progressive=True)
    base = process_image(encode(photo, "JPEG", 90), ImageSpec(image_size=384))
    prog = process_image(buf.getvalue(), ImageSpec(image_size=384))
    assert prog["status"] == base["status"] == "ok"
    assert (prog["width"], prog["height"]) == (base["width"], base["height"]) == (512, 384)
    assert phash_distance(prog["phash"], base["phash"]) <= 2


def test_same_bytes_give_the_same_output_bytes():
    data = encode(render_photo("green", "triangle", 6, 1024, 768), "JPEG", 90)
    assert process_image(data, ImageSpec())["image"] == process_image(data, ImageSpec())["image"]


def test_small_images_are_not_upscaled():
    out = process_image(encode(render_photo("green", "square", 1, 200, 100), "PNG"), ImageSpec(image_size=336))
    assert (out["width"], out["height"]) == (200, 100)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_undone(orientation):
    upright = render_photo("blue", "triangle", 2, 400, 300)
    out = process_image(encode(upright, "JPEG", 95, exif_orientation=orientation), ImageSpec(image_size=300))
    got = np.asarray(Image.open(io.BytesIO(out["image"])), dtype=np.float32)
    assert got.shape == (300, 400, 3)
    assert np.abs(got - np.asarray(upright, dtype=np.float32)).mean() < 10


def test_truncated_jpeg_fails_decode():
    data = encode(render_photo("red", "circle", 3, 640, 480), "JPEG")
    out = process_image(data[: len(data) // 2], ImageSpec())
    assert out["status"] == "failed_decode" and "truncated" in out["error"]


def test_near_duplicates_are_close_in_phash():
    a = process_image(web.near_dup_bytes(0), ImageSpec())["phash"]
    for v in (1, 2, 3):
        assert phash_distance(a, process_image(web.near_dup_bytes(v), ImageSpec())["phash"]) <= 6


@pytest.mark.parametrize("factor", [1.2, 1.5, 1.9, 3.0])
def test_shrink_sizes_and_antialiasing(factor):
    """Every branch of the resize gives the short side asked for; between 4/3 and 2 (the pre-blurred
    branch) 1-px stripes, the worst aliasing case, fade to grey instead of beating into moire."""
    import cv2

    from vila_assets.core.crawl.imaging import _shrink

    stripes = np.zeros((600, 900, 3), np.uint8)
    stripes[:, ::2] = 255
    short = int(600 / factor)
    out = _shrink(stripes, short)
    assert out.shape[0] == short and abs(out.shape[1] - 900 * short / 600) <= 1
    plain = cv2.resize(stripes, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR_EXACT)
    if 4 / 3 < factor < 2:
        assert out.std() < 0.5 * plain.std()
    assert _shrink(stripes, 600) is stripes  # never upscaled, not even copied


def _seeds() -> list[bytes]:
    from vila_assets.sample_world import hostile_images as hostile

    photos = [encode(render_photo("red", "circle", 1, 96, 64), fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")]
    modes = [hostile.mode_sample_bytes(s.name) for s in hostile.MODE_SAMPLES]
    bombs = [make() for make, _ in hostile.PIXEL_BOMBS.values() if make is not hostile.bomb_png]
    progressive = io.BytesIO()
    render_photo("blue", "square", 2, 96, 64).save(progressive, "JPEG", progressive=True)
    return photos + modes + bombs + [progressive.getvalue()]


SEEDS = _seeds()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.integers(0, 4096), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8))
def test_hostile_image_bytes_never_raise_and_always_give_a_status_and_reason(seed, cut, flips):
    """Any image of any format and mode, truncated anywhere and with bytes flipped anywhere (headers
    included): a result with a status, and a reason unless it is ok; never an exception (one escaping
    exception would end the whole crawl)."""
    data = bytearray(seed[: max(0, len(seed) - cut)])
    for where, value in flips:
        if data:
            data[where % len(data)] = value
    out = process_image(bytes(data), ImageSpec(image_size=48, max_pixels=4_000_000))
    assert out["status"] in ("ok", "failed_decode", "filtered")
    assert (out["status"] == "ok") == (out["image"] is not None)
    assert out["status"] == "ok" or out["error"]
