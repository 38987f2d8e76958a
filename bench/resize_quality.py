"""How faithful is the crawler's shrink? PSNR against a Lanczos resize of the full-resolution decode.

    .venv/bin/python bench/resize_quality.py

For sample-world photos and a zone plate (the worst case for aliasing) at sizes whose libjpeg-turbo M/8
decode leaves shrink factors from 1.09 to 1.47, it prints the PSNR of each resize method before and
after the q75 JPEG re-encode the crawler stores, and its time. The crawler's choice (core.crawl.imaging
._shrink) is printed as ``ours``.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vila_assets.core.crawl.imaging import _shrink, _target_size  # noqa: E402
from vila_assets.sample_world.image_web import photo_bytes  # noqa: E402

SHORT = 384
SIZES = [(640, 480), (800, 600), (1280, 960), (1600, 1200), (1900, 1425), (2000, 1500), (3000, 2000)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def zone_plate(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    z = (127.5 + 127.5 * np.cos(np.pi * ((x - w / 2) ** 2 + (y - h / 2) ** 2) / (2 * max(w, h)))).astype(np.uint8)
    return np.stack([z] * 3, -1)


def q75(pixels: np.ndarray) -> np.ndarray:
    data = simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=75, colorspace="RGB", colorsubsampling="420")
    return simplejpeg.decode_jpeg(data)


def ms(fn, n: int = 20) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    cv2.setNumThreads(1)
    for w, h in SIZES:
        cases = [("photo", photo_bytes("red", "circle", 0, w, h, "jpg", None)),
                 ("zone", simplejpeg.encode_jpeg(zone_plate(w, h), quality=95, colorspace="RGB"))]
        for kind, data in cases:
            full = Image.open(io.BytesIO(data)).convert("RGB")
            size = _target_size(*full.size, SHORT)
            ref = np.asarray(full.resize(size, Image.Resampling.LANCZOS))
            scaled = simplejpeg.decode_jpeg(data, min_width=SHORT, min_height=SHORT)
            factor = min(scaled.shape[:2]) / SHORT
            methods = {
                "area": lambda: cv2.resize(scaled, size, interpolation=cv2.INTER_AREA),
                "bilinear": lambda: cv2.resize(scaled, size, interpolation=cv2.INTER_LINEAR_EXACT),
                "ours": lambda: _shrink(scaled, SHORT),
            }
            cells = []
            for name, fn in methods.items():
                out = fn()
                cells.append(f"{name} {psnr(out, ref):5.1f}/{psnr(q75(out), ref):4.1f} dB {ms(fn):4.2f} ms")
            print(f"{kind:5s} {w}x{h} factor {factor:.2f}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
