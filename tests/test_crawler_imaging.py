"""Imaging in isolation: sniffing, bomb guard, reduced decode, orientation, flattening."""

from __future__ import annotations

import io

import numpy as np
import pytest
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
    calls = []
    from PIL import JpegImagePlugin

    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append(size)
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = process_image(encode(render_photo("green", "square", 1, 2000, 1500), "JPEG"), ImageSpec(image_size=336))
    assert calls == [(336, 336)]
    assert (out["width"], out["height"], out["orig_width"], out["orig_height"]) == (448, 336, 2000, 1500)


def test_small_images_are_not_upscaled():
    out = process_image(encode(render_photo("green", "square", 1, 200, 100), "PNG"), ImageSpec(image_size=336))
    assert (out["width"], out["height"]) == (200, 100)


@pytest.mark.parametrize("orientation", [3, 6, 8])
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
