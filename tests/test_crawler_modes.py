"""Every image mode Pillow opens comes out as faithful RGB, or is refused with a reason; the memory a
decode reserves from the pixel budget covers what it really takes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from vila_assets.core.crawl.imaging import ImageSpec, process_image
from vila_assets.sample_world import hostile_images as hostile

TOLERANCE = 6  # a flat colour through the q75 JPEG re-encode


def _pixels(out: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(out["image"])).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("sample", hostile.MODE_SAMPLES, ids=lambda s: s.name)
def test_every_mode_is_converted_faithfully_or_refused_with_a_reason(sample):
    data = hostile.mode_sample_bytes(sample.name)
    assert Image.open(io.BytesIO(data)).mode == sample.mode  # the sample really is in that mode
    out = process_image(data, ImageSpec())
    if isinstance(sample.expected, str):
        assert (out["status"], out["error"], out["image"]) == ("failed_decode", sample.expected, None)
        return
    assert out["status"] == "ok", out["error"]
    px = _pixels(out)
    assert px.shape == (hostile.H, hostile.W, 3)
    left, right = px[hostile.H // 2, hostile.W // 4], px[hostile.H // 2, 3 * hostile.W // 4]
    for got, want in ((left, sample.expected[0]), (right, sample.expected[1])):
        assert np.abs(got - np.array(want)).max() <= TOLERANCE, (sample.name, got.tolist(), want)


def test_sixteen_bit_grey_is_scaled_not_clipped_to_white():
    """Regression: a 16-bit greyscale PNG used to come out plain white (Pillow clips I;16 at 255)."""
    ramp = (np.arange(256, dtype=np.uint16) * 257)[None, :].repeat(32, axis=0)  # 0 .. 65535
    data = hostile.raw_png(ramp[..., None], 0)
    out = process_image(data, ImageSpec())
    grey = _pixels(out)[16, :, 0]
    assert np.abs(grey - np.arange(256)).max() <= TOLERANCE  # value >> 8, i.e. the ramp 0 .. 255


def _flattened_reference(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Full-size composite onto white, a Pillow box resize, and the crawler's JPEG re-encode: the
    slow obvious way to the same stored image."""
    rgba = img.convert("RGBA")
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    small = np.asarray(white.resize(size, Image.Resampling.BOX))
    encoded = simplejpeg.encode_jpeg(small, quality=75, colorspace="RGB", colorsubsampling="420")
    return np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA"])
def test_large_images_converted_in_reduced_stripes_match_the_full_size_composite(mode):
    """Stripe-wise conversion with a box reduction (what keeps memory near the decoded image) gives
    the picture a full-size composite would."""
    rng = np.random.default_rng(1)
    pattern = rng.integers(0, 256, size=(30, 45, 4), dtype=np.uint8)
    pattern[..., 3] = np.where(pattern[..., 3] > 128, 255, pattern[..., 3])  # opaque, clear and between
    big = Image.fromarray(pattern, "RGBA").resize((2700, 1800), Image.Resampling.NEAREST)
    if mode == "P":
        big = big.convert("RGB").quantize(64)
        big.info["transparency"] = bytes(range(0, 256, 4))  # a different alpha for every entry
        big = Image.open(io.BytesIO(_encode(big, "PNG", transparency=big.info["transparency"])))
    elif mode == "LA":
        big = big.convert("LA")
    data = _encode(big, "PNG")
    out = process_image(data, ImageSpec(image_size=300))
    assert out["status"] == "ok", out["error"]
    got = _pixels(out)
    want = _flattened_reference(Image.open(io.BytesIO(data)), (got.shape[1], got.shape[0]))
    assert np.abs(got - want).mean() < 1.5


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


_PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    from vila_assets.core.crawl import imaging
    from vila_assets.core.crawl.imaging import ImageSpec, process_image
    from vila_assets.sample_world import hostile_images as hostile

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))

    spec, report = ImageSpec(), {}
    process_image(hostile.near_limit_image("jpg", 64), spec)  # imports and first-call setup
    for fmt in sys.argv[1:]:
        data = hostile.near_limit_image(fmt, 4000)
        header = imaging._read_header(data, imaging.sniff(data), spec)
        estimate = imaging._decode_cost(data, imaging.sniff(data), header, spec)
        del header
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        before = status("VmRSS")
        out = process_image(data, spec)
        report[fmt] = {"status": out["status"], "peak": status("VmHWM") - before, "estimate": estimate}
    print(json.dumps(report))
""")


@pytest.mark.parametrize("fmt, floor_mb", [("png", 60), ("webp", 60), ("jpg", 30), ("gif", 14), ("tif", 60)])
def test_decode_cost_estimates_cover_the_measured_peak(fmt, floor_mb):
    """The pixel budget reserves ``decode_cost`` before decoding; measured in a fresh process (a 16 MP
    image of each heavy kind: RGBA PNG, still WebP, progressive JPEG, GIF, CMYK TIFF), the real growth
    of the resident set stays below that estimate, and is not trivially small (the floor: the decoded
    pixels themselves, so the measurement saw the decode)."""
    run = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, fmt], capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])[fmt]
    assert got["status"] == "ok", got
    assert floor_mb * 2**20 < got["peak"] <= got["estimate"], got
