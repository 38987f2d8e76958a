"""Bytes in, training JPEG out: sniff, bomb guard, reduced decode, upright, flatten, resize, re-encode, hash.

Runs in a worker (process or thread), so everything here is a plain function of its arguments and
returns a plain dict. A broken image is a result (``failed_decode`` / ``filtered``), never an exception.

Which library does what (measured per image on this 2-core box, bench/README.md):
- Pillow parses the header lazily (size, mode, EXIF orientation) for the checks, and decodes everything
  that is not a plain JPEG or a still WebP (PNG, GIF, TIFF, animated WebP, CMYK JPEGs ...); still
  WebPs go through OpenCV's libwebp (same pixels, a third of Pillow's memory).
- JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` with DCT-domain scaling by any M/8, the
  smallest scale whose short side still covers ``image_size`` (Pillow's ``draft`` only knows 1/2, 1/4,
  1/8, so it often decodes up to 2x more pixels than needed).
- The remaining shrink is OpenCV's (SIMD): bilinear for the small factors the DCT scaling leaves
  (<= 4/3), Gaussian pre-blur + bilinear up to 2, ``INTER_AREA`` (antialiased; img2dataset's choice)
  above. For 640x480 -> 512x384: 0.6 ms bilinear, 3.5 ms area, 6.6 ms Pillow bicubic. Decoder and resize release the GIL, so imaging
  threads run in parallel.
- Re-encoding is libjpeg-turbo again (``simplejpeg``, 4:2:0 like Pillow's default).

Before any decoder runs: the header's declared size is checked against ``max_pixels`` (``headers.py``),
then Pillow's parsed size and mode (a mode that cannot be shown faithfully is refused, ``modes.py``),
and the estimated peak memory of the decode is reserved from the crawl's pixel budget (``budget.py``).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from .budget import Budget
from .headers import declared_size, describe_non_image, jpeg_frame, sniff
from .modes import UnsupportedMode, check_mode, decode_cost, pillow_bytes_per_px, to_rgb

__all__ = ["IMAGING_VERSION", "ImageSpec", "declared_size", "describe_non_image", "phash", "phash_distance",
           "process_image", "sniff"]

# Bumped whenever the same bytes would come out as different pixels or hashes: part of the crawl's
# checkpoint fingerprint, so a resume never mixes rows made by two imaging versions.
# 3: explicit mode conversions (16-bit grey scaled, not clipped), stripe-wise box reduction.
IMAGING_VERSION = 3

# The transposes ImageOps.exif_transpose uses; applied by hand *after* the resize, because
# exif_transpose needs the full-size pixels and would defeat the reduced decode.
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageSpec:
    """What the worker needs from CrawlConfig (small and picklable)."""

    image_size: int = 336
    quality: int = 75
    min_size: int = 0
    max_aspect_ratio: float = 0.0
    max_pixels: int = 64_000_000


@lru_cache(maxsize=None)
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def phash(img: Image.Image | np.ndarray, hash_size: int = 8, highfreq_factor: int = 4) -> str:
    """64-bit perceptual hash as 16 hex chars: the ``imagehash.phash`` algorithm and bit order (32x32
    grey, 2-D DCT-II, low 8x8 block above its median), with OpenCV for the grey conversion and an area
    (box) reduction to 32x32, which run without the GIL. Takes a Pillow image or RGB/grey pixels."""
    n = hash_size * highfreq_factor
    pixels = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) and img.mode not in ("RGB", "L") else img)
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    small = cv2.resize(grey, (n, n), interpolation=cv2.INTER_AREA).astype(np.float64)
    d = _dct_matrix(n)[:hash_size]  # only the low-frequency rows are kept anyway
    # einsum, not @: a BLAS call here wakes OpenBLAS's thread pool, whose spinning threads
    # starved the other imaging worker (measured 7x slower per image on 2 cores).
    low = np.einsum("ki,ij,lj->kl", d, small, d).ravel()
    ordered = np.sort(low)
    median = (ordered[len(low) // 2 - 1] + ordered[len(low) // 2]) / 2  # np.median, without its overhead
    return np.packbits(low > median).tobytes().hex()


def phash_distance(a: str, b: str) -> int:
    """Hamming distance between two hex pHashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _target_size(width: int, height: int, short: int) -> tuple[int, int]:
    if width <= height:
        return short, max(1, round(height * short / width))
    return max(1, round(width * short / height)), short


_SOS, _APP1 = 0xDA, 0xE1


def _plain_jpeg_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG that libjpeg-turbo can decode to RGB and that carries no EXIF block
    (so no orientation to undo); ``None`` for anything else, which goes through Pillow's parser.
    Skips Pillow's Python-level header parse for most web JPEGs (~0.2 ms each)."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == _SOS:
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == _APP1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            return None
        i += 2 + length
    else:
        return None  # no scan found: let Pillow explain what is wrong
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (width, height) if colorspace in ("YCbCr", "Gray", "RGB") else None


def _decode_jpeg_scaled(data: bytes, short: int) -> np.ndarray | None:
    """RGB pixels of a JPEG, DCT-scaled by the smallest M/8 that keeps both sides >= ``short``;
    ``None`` when libjpeg-turbo cannot produce RGB directly (CMYK/YCCK) or reports any problem, so the
    caller falls back to Pillow, which decides between "decodable" and "corrupt or truncated"."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=short, min_width=short, strict=True)
    except ValueError:
        return None


def _webp_animated(data: bytes) -> bool:
    return data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & 0x02)


def _decode_webp_still(data: bytes, short: int) -> np.ndarray:
    """A still WebP through OpenCV's libwebp binding: one BGR(A) array (Pillow's animation decoder
    holds three full canvases besides its image), alpha composited onto white in place, stripe by
    stripe, then shrunk; same pixels as Pillow's decode."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError("webp decode failed")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        rows = max(1, (1 << 20) // pixels.shape[1])
        for top in range(0, pixels.shape[0], rows):
            part = pixels[top : top + rows]
            alpha = part[..., 3:4].astype(np.uint16)
            part[..., :3] = (part[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
        pixels = _shrink(pixels, short)[..., :3]
    else:
        pixels = _shrink(pixels, short)
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB)


def _decode_with_pillow(img: Image.Image, fmt: str, short: int) -> np.ndarray:
    """Pixels of any accepted format and mode as RGB uint8 (alpha on white), box-reduced towards
    ``short`` while converting. Raises on corrupt data, ``UnsupportedMode`` on a refused mode."""
    if fmt == "JPEG" and min(img.size) >= 2 * short:
        img.draft("RGB", (short, short))  # DCT-domain downscale by 1/2, 1/4 or 1/8
    img.load()  # a GIF or animated image: its first frame
    return to_rgb(img, short)


# Up to this shrink factor a 2-tap bilinear is as faithful as area averaging once the result is a JPEG:
# measured against a Lanczos resize of the full decode, photos differ by <= 0.2 dB after the q75
# re-encode (bench/README.md), and a zone plate (pure aliasing test) by <= 0.4 dB up to 1.3x but 2.4 dB
# at 1.47x. After the M/8 DCT scaling most JPEGs are left with a factor below it, at a quarter of the cost.
BILINEAR_MAX_FACTOR = 4 / 3


def _shrink(pixels: np.ndarray, short: int) -> np.ndarray:
    """Resize so the short side is ``short``, only if it is bigger (never upscale).

    Factor <= 4/3: bilinear. Up to 2 (what the DCT scaling leaves of the rest): a Gaussian pre-blur
    (sigma = sqrt(f^2 - 1) / 2) then bilinear, within 1.1 dB of area averaging on the zone plate at
    2.5x less cost. Larger factors (other formats, huge JPEGs): ``INTER_AREA`` (exact pixel-area
    weights). The bilinear and Gaussian kernels are OpenCV's bit-exact fixed-point ones, so a resume on
    another CPU type gives the same bytes."""
    h, w = pixels.shape[:2]
    if min(w, h) <= short:
        return pixels
    size = _target_size(w, h, short)
    factor = min(w, h) / short
    if factor <= BILINEAR_MAX_FACTOR:
        return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR_EXACT)
    if factor < 2:
        blurred = cv2.GaussianBlur(pixels, (0, 0), 0.5 * (factor * factor - 1) ** 0.5)
        return cv2.resize(blurred, size, interpolation=cv2.INTER_LINEAR_EXACT)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


class _Rejected(Exception):
    """The image ends here: ``status`` (``failed_decode`` or ``filtered``) with ``error`` as the reason."""

    def __init__(self, error: str, status: str = "failed_decode") -> None:
        super().__init__(error)
        self.error, self.status = error, status


@dataclass
class _Header:
    """What the checks need, read before any pixel is decoded."""

    width: int
    height: int
    orientation: int  # EXIF orientation, 1 = upright
    img: Image.Image | None  # the lazily opened Pillow image, None for a plain JPEG
    mode: str = "RGB"  # Pillow's mode before decoding


def process_image(data: bytes, spec: ImageSpec, pixels_budget: Budget | None = None,
                  cancelled: threading.Event | None = None) -> dict:
    """Turn downloaded bytes into a result dict (status, error, sizes, sha256, phash, image).

    ``pixels_budget``: the crawl's budget for decoded pixels; the decode's estimated peak is reserved
    from it before decoding (waiting for room) and given back after. ``cancelled`` ends such a wait
    with ``budget.Cancelled`` (the crawl is stopping; there is no row to report)."""
    out: dict = {
        "status": "failed_decode",
        "error": None,
        "width": None,
        "height": None,
        "orig_width": None,
        "orig_height": None,
        "sha256": hashlib.sha256(data).hexdigest(),
        "phash": None,
        "image": None,
    }
    fmt = sniff(data)
    if fmt is None:
        out["error"] = describe_non_image(data)
        return out
    with warnings.catch_warnings():
        # Our own pixel check below is the guard; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            header = _read_header(data, fmt, spec)
            out["orig_width"], out["orig_height"] = width, height = _upright_size(header, fmt, spec)
            _filter(width, height, spec)
            cost = _decode_cost(data, fmt, header, spec)
            if pixels_budget is not None:
                pixels_budget.take_blocking(cost, cancelled)
            try:
                pixels, encoded = _render(data, fmt, header, spec)
            finally:
                if pixels_budget is not None:
                    pixels_budget.give(cost)
        except _Rejected as rejected:
            out["status"], out["error"] = rejected.status, rejected.error
            return out
    out["status"] = "ok"
    out["height"], out["width"] = pixels.shape[:2]
    out["phash"] = phash(pixels)
    out["image"] = encoded
    return out


def _bomb(width: int, height: int) -> _Rejected:
    return _Rejected(f"decompression bomb: {width}x{height} px")


def _read_header(data: bytes, fmt: str, spec: ImageSpec) -> _Header:
    """Size, mode and orientation from the header; raises ``_Rejected`` for a bomb (checked on the
    declared size before any parser runs), a refused mode or an unreadable header."""
    declared = declared_size(data, fmt)
    if declared is not None and declared[0] * declared[1] > spec.max_pixels:
        raise _bomb(*declared)
    header = _plain_jpeg_header(data) if fmt == "JPEG" else None
    if header is not None:  # the common case: size from libjpeg-turbo, no EXIF, so upright
        return _Header(header[0], header[1], 1, None)
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])  # lazy: parses the header only
    except Image.DecompressionBombError as exc:  # > 2x Pillow's own limit: refused inside open()
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise _Rejected(f"decompression bomb: {pixels[1]} px" if pixels else "decompression bomb") from None
    except Exception as exc:  # noqa: BLE001 - any parser error means "not decodable"
        raise _Rejected(f"cannot open {fmt.lower()}: {type(exc).__name__}") from None
    if img.size[0] * img.size[1] > spec.max_pixels:  # a GIF frame can outgrow its declared screen
        raise _bomb(*img.size)
    try:
        check_mode(img.mode)
    except UnsupportedMode as exc:
        raise _Rejected(str(exc)) from None
    try:
        orientation = int(img.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is not worth losing the image
        orientation = 1
    return _Header(img.size[0], img.size[1], orientation, img, img.mode)


def _decode_cost(data: bytes, fmt: str, header: _Header, spec: ImageSpec) -> int:
    """Estimated peak bytes of decoding this image (what the pixel budget reserves)."""
    w, h = header.width, header.height
    if fmt == "WEBP" and not _webp_animated(data):
        return decode_cost(6, w, h, spec.image_size)  # OpenCV: one BGR(A) array and a decoder buffer
    if fmt != "JPEG":
        return decode_cost(pillow_bytes_per_px(fmt, header.mode), w, h, spec.image_size)
    frame = jpeg_frame(data)
    coefficients = frame[2] * w * h if frame is not None and frame[3] else 0
    # Pillow's draft (the fallback) scales by 1/2, 1/4 or 1/8, never below the short side asked for;
    # libjpeg-turbo's M/8 scaling decodes no more pixels than that.
    scale = 1.0
    while scale > 0.125 and min(w, h) * scale / 2 >= spec.image_size:
        scale /= 2
    scaled = max(1, int(w * scale)) * max(1, int(h * scale))
    return coefficients + decode_cost(4, scaled, 1, spec.image_size)


def _upright_size(header: _Header, fmt: str, spec: ImageSpec) -> tuple[int, int]:
    """The source's (width, height) once upright; raises ``_Rejected`` for a bad header or a bomb."""
    w, h = header.width, header.height
    if w <= 0 or h <= 0:
        raise _Rejected(f"bad {fmt.lower()} header: {w}x{h} px")
    if w * h > spec.max_pixels:
        raise _bomb(w, h)
    return (h, w) if header.orientation in (5, 6, 7, 8) else (w, h)


def _filter(width: int, height: int, spec: ImageSpec) -> None:
    """Raise ``_Rejected`` (status "filtered") for a source too small or too elongated."""
    short, long_ = min(width, height), max(width, height)
    if spec.min_size and short < spec.min_size:
        raise _Rejected(f"too small: {width}x{height} px, short side < {spec.min_size}", "filtered")
    if spec.max_aspect_ratio and long_ / short > spec.max_aspect_ratio:
        raise _Rejected(f"aspect ratio {long_ / short:.2f} > {spec.max_aspect_ratio:g}", "filtered")


def _render(data: bytes, fmt: str, header: _Header, spec: ImageSpec) -> tuple[np.ndarray, bytes]:
    """Decode (reduced where possible), shrink, make upright and re-encode: (pixels, JPEG bytes)."""
    try:
        pixels = _decode_jpeg_scaled(data, spec.image_size) if fmt == "JPEG" else None
        if fmt == "WEBP" and not _webp_animated(data):
            pixels = _decode_webp_still(data, spec.image_size)
        if pixels is None:
            img = header.img if header.img is not None else Image.open(io.BytesIO(data), formats=[fmt])
            header.img = None  # the decoded image is freed as soon as its pixels are converted
            pixels = _decode_with_pillow(img, fmt, spec.image_size)
            del img
        pixels = _shrink(pixels, spec.image_size)
        if header.orientation in _EXIF_TRANSPOSE:
            # Undone on the small image: cheap, and it keeps the reduced decode.
            pixels = np.asarray(Image.fromarray(pixels).transpose(_EXIF_TRANSPOSE[header.orientation]))
        encoded = simplejpeg.encode_jpeg(
            np.ascontiguousarray(pixels), quality=spec.quality, colorspace="RGB", colorsubsampling="420"
        )
    except UnsupportedMode as exc:  # a mode only known once decoded (an animated image's frame)
        raise _Rejected(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - truncated / corrupt pixel data
        raise _Rejected(f"corrupt or truncated {fmt.lower()}: {type(exc).__name__}") from None
    return pixels, encoded


def configure_worker() -> None:
    """Per imaging worker: OpenCV must not start its own thread pool (the crawler runs one worker per
    core already; nested pools only oversubscribe the cores)."""
    cv2.setNumThreads(1)
