"""Synthetic "photos" for the sample world: coloured shapes on textured backgrounds.

Everything here is a pure function of its arguments, so the sample world is the same on every
machine. The tiny CLIP model is trained on the same distribution (see ``tiny_clip``), which makes
"a photo of a red circle" really outscore "a photo of a blue square" on a red-circle image.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (38, 170, 60),
    "blue": (40, 70, 215),
    "yellow": (235, 205, 35),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


def caption(color: str, shape: str) -> str:
    """The caption that matches ``render_photo(color, shape, ...)``."""
    return f"a photo of a {color} {shape}"


def _rng(*key: object) -> np.random.Generator:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth two-colour gradient plus fine noise: compresses like a real photo, not like a flat fill."""
    top = rng.integers(90, 200, size=3)
    bottom = rng.integers(90, 200, size=3)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    grad = top[None, None, :] * (1 - t) + bottom[None, None, :] * t
    grad = np.broadcast_to(grad, (height, width, 3)).astype(np.float32)
    noise = rng.normal(0.0, 9.0, size=(height, width, 3)).astype(np.float32)
    return np.clip(grad + noise, 0, 255).astype(np.uint8)


def render_photo(color: str, shape: str, seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """An RGB image of one ``color`` ``shape`` on a textured background, deterministic in all arguments."""
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}; expected one of {sorted(COLORS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    rng = _rng("photo", color, shape, seed, width, height)
    img = Image.fromarray(_background(rng, width, height), "RGB")
    draw = ImageDraw.Draw(img)
    short = min(width, height)
    size = int(short * rng.uniform(0.45, 0.7))
    cx = int(width / 2 + rng.uniform(-0.15, 0.15) * (width - size))
    cy = int(height / 2 + rng.uniform(-0.15, 0.15) * (height - size))
    box = (cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2)
    jitter = rng.integers(-18, 18, size=3)
    fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[color], jitter))
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        x0, y0, x1, y1 = box
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return img


def render_placeholder(width: int = 640, height: int = 480) -> Image.Image:
    """The grey "image not available" picture that dead image hosts serve with a 200."""
    img = Image.new("RGB", (width, height), (204, 204, 204))
    draw = ImageDraw.Draw(img)
    draw.rectangle((width // 4, height // 3, 3 * width // 4, 2 * height // 3), outline=(150, 150, 150), width=4)
    draw.text((width // 4 + 10, height // 2 - 6), "image not available", fill=(90, 90, 90))
    return img


# EXIF orientation -> the transpose that turns an upright picture into what a camera stores.
# How a camera stores an upright picture for each EXIF orientation (the inverse of what undoes it).
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(
    img: Image.Image,
    fmt: str = "JPEG",
    quality: int = 90,
    exif_orientation: int | None = None,
) -> bytes:
    """Encode ``img``; with ``exif_orientation`` (2..8) store it rotated plus the EXIF tag that undoes it."""
    out = io.BytesIO()
    kwargs: dict[str, object] = {}
    if fmt.upper() in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if exif_orientation is not None:
        if exif_orientation not in _STORE_FOR_ORIENTATION:
            raise ValueError(f"unsupported EXIF orientation {exif_orientation}")
        img = img.transpose(_STORE_FOR_ORIENTATION[exif_orientation])
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()
