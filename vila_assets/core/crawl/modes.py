"""Any Pillow image mode to 8-bit RGB, faithfully, in bounded memory; or a reason why not.

Pillow's own ``convert("RGB")`` clips where it should scale: a 16-bit greyscale PNG (mode ``I;16``)
comes out plain white, a float image black. Here every mode has an explicit rule:

- RGB, RGBX, L, 1, P, YCbCr, CMYK: Pillow's conversion (CMYK JPEGs arrive already un-inverted);
  LAB through LittleCMS (Pillow's ImageCms) to sRGB.
- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``): the high byte (value >> 8), the same rule
  Pillow applies to 16-bit RGB and RGBA PNGs, which it opens as 8-bit RGB / RGBA.
- Anything with alpha (RGBA, LA, PA, and P / L / RGB / I;16 with a ``transparency`` key)
  is composited onto white.
- I (32-bit integers) and F (floats) are refused: their values have no standard display range.
- Any other mode is refused, naming it.

Memory: besides the decoded Pillow image there is only the reduced result and one stripe. Modes whose
channels average correctly (RGB, L, CMYK, YCbCr) are box-reduced by an integer factor in place and
converted small; the others (palette indices, 16-bit values, alpha, LAB) are converted in horizontal
stripes of about a megapixel, each reduced right away (alpha on premultiplied values, which commutes
with compositing onto white). ``decode_cost`` is what the pixel budget reserves before decoding.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

WHITE = 255
STRIPE_PX = 1 << 20  # pixels converted at a time
REFUSED_MODES = {
    "I": "32-bit integer pixels have no standard display range",
    "F": "floating-point pixels have no standard display range",
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_REDUCE_FIRST = frozenset({"RGB", "RGBX", "L", "YCbCr", "CMYK"})
SUPPORTED_MODES = _ALPHA_MODES | _SIXTEEN_BIT | _REDUCE_FIRST | {"P", "1", "LAB"}
# Bytes per pixel of Pillow's decoded storage (everything else is one 32-bit word per pixel).
_STORAGE = {"1": 1, "L": 1, "P": 1, **dict.fromkeys(_SIXTEEN_BIT, 2)}
# Extra full-size buffers some decoders keep besides Pillow's image (bytes per pixel): libtiff's RGBA
# reader; libwebp's animation decoder (two canvases and a copy of the frame, measured 977 MB at 64 MP).
_DECODER_EXTRA = {"WEBP": 12, "TIFF": 4}


class UnsupportedMode(Exception):
    """The image's mode cannot be shown as RGB faithfully; the message says why."""


def check_mode(mode: str) -> None:
    """Raise ``UnsupportedMode`` for a mode refused before anything is decoded."""
    if mode in REFUSED_MODES:
        raise UnsupportedMode(f"unsupported image mode {mode}: {REFUSED_MODES[mode]}")
    if mode not in SUPPORTED_MODES:
        raise UnsupportedMode(f"unsupported image mode {mode}")


def reduce_factor(width: int, height: int, short: int) -> int:
    """The integer box-reduction that keeps the short side >= ``short`` (1 = none)."""
    return max(1, min(width, height) // max(1, short))


def pillow_bytes_per_px(fmt: str, mode: str) -> int:
    """Full-size bytes per pixel while Pillow decodes ``fmt`` into ``mode``."""
    return _STORAGE.get(mode, 4) + _DECODER_EXTRA.get(fmt, 0)


def decode_cost(bytes_per_px: int, width: int, height: int, short: int) -> int:
    """Estimated peak bytes of decoding and converting one image: the decoded full-size buffers
    (``bytes_per_px``), the reduced RGB result and one stripe's temporaries. Measured peaks stay
    below it (tests/test_crawler_modes.py)."""
    k = reduce_factor(width, height, short)
    reduced = 3 * math.ceil(width / k) * math.ceil(height / k)
    return bytes_per_px * width * height + reduced + 24 * STRIPE_PX


def to_rgb(img: Image.Image, short: int) -> np.ndarray:
    """The loaded image as RGB uint8 pixels, box-reduced by ``reduce_factor`` (alpha on white)."""
    check_mode(img.mode)
    width, height = img.size
    k = reduce_factor(width, height, short)
    if img.mode in _REDUCE_FIRST and "transparency" not in img.info:
        # Channel-wise averaging is right for these modes: reduce in place, convert the small result.
        small = img.reduce(k) if k > 1 else img
        return np.asarray(small if small.mode == "RGB" else small.convert("RGB"))
    convert = _stripe_converter(img)
    rows = max(k, STRIPE_PX // max(1, width) // k * k)  # a multiple of k: stripes reduce independently
    pieces = []
    for top in range(0, height, rows):
        stripe = convert(img.crop((0, top, width, min(height, top + rows))), k)
        pieces.append(np.asarray(stripe if stripe.mode == "RGB" else stripe.convert("RGB")))
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _stripe_converter(img: Image.Image):
    """``(stripe, k) -> reduced RGB-or-L image`` for modes that must be converted before averaging
    (palette indices, 16-bit values, alpha, LAB), decided once for the whole image."""
    mode, transparency = img.mode, img.info.get("transparency")
    if mode in _SIXTEEN_BIT:
        return lambda s, k: _reduce(_sixteen_bit(s, transparency), k)
    if mode == "P" and transparency is not None:
        palette = _palette_on_white(img).tobytes()
        return lambda s, k: _reduce(_repaletted(s, palette).convert("RGB"), k)
    if mode in ("P", "1"):
        return lambda s, k: _reduce(s.convert("RGB" if mode == "P" else "L"), k)
    if mode == "LAB":
        lab = _lab_to_rgb()
        return lambda s, k: _reduce(lab(s), k)
    return _alpha_on_white  # RGBA, LA, PA, and L / RGB with a transparent colour


def _repaletted(stripe: Image.Image, palette: bytes) -> Image.Image:
    """``stripe`` (its own copy of the image) with an opaque palette in place of palette + alpha."""
    stripe.info.pop("transparency", None)
    stripe.putpalette(palette, "RGB")
    return stripe


def _reduce(img: Image.Image, k: int) -> Image.Image:
    return img.reduce(k) if k > 1 else img


def _sixteen_bit(stripe: Image.Image, transparency) -> Image.Image:
    values = np.asarray(stripe)  # uint16, whatever the storage byte order
    grey = (values >> 8).astype(np.uint8)
    if isinstance(transparency, int):
        grey[values == transparency] = WHITE
    return Image.fromarray(grey)


def _alpha_on_white(stripe: Image.Image, k: int) -> Image.Image:
    """Composite onto white; reduced first on premultiplied values (compositing is linear, so this is
    the reduction of the composited image, without a full-size composited copy)."""
    rgba = stripe.convert("RGBA")  # applies a transparent colour of L / RGB images
    if k > 1:
        rgba = rgba.convert("RGBa").reduce(k).convert("RGBA")
    out = Image.new("RGB", rgba.size, (WHITE, WHITE, WHITE))
    out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return out


def _palette_on_white(img: Image.Image) -> np.ndarray:
    """The palette (256 RGB entries) with each entry's alpha (tRNS or an RGBA palette) composited onto
    white: pixels map through it exactly as compositing every pixel would, at one byte per pixel."""
    palette = np.zeros((256, 4), dtype=np.uint16)
    palette[:, 3] = 255  # entries past the palette's end: opaque black, as Pillow shows them
    rgba = img.palette is not None and img.palette.mode == "RGBA"
    given = np.asarray(img.getpalette("RGBA" if rgba else "RGB") or [], dtype=np.uint16)
    given = given.reshape(-1, 4 if rgba else 3)[:256]
    palette[: len(given), : given.shape[1]] = given
    transparency = img.info.get("transparency")
    if isinstance(transparency, int) and 0 <= transparency < 256:
        palette[transparency, 3] = 0
    elif isinstance(transparency, bytes):
        alphas = np.frombuffer(transparency[:256], dtype=np.uint8)
        palette[: len(alphas), 3] = alphas
    alpha = palette[:, 3:4]
    return ((palette[:, :3] * alpha + WHITE * (255 - alpha) + 127) // 255).astype(np.uint8)


def _lab_to_rgb():
    from PIL import ImageCms

    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return lambda s: ImageCms.applyTransform(s, transform)
