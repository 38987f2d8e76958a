"""Bytes a hostile or unusual image host serves: every Pillow mode, pixel bombs, compression bombs.

All pure functions of their arguments (cached), so the image web can serve them and tests can check
the crawler's output against ``MODE_SAMPLES``' expectations.

Mode samples are 64x48: the left half one colour, the right half another; ``expected`` gives the RGB
the crawler must store at the centre of each half (alpha composited onto white), or the reason it
must give when it refuses the mode.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

W, H = 64, 48
BOMB_SIDE = 30_000
# Just over the crawler's default max_pixels (64M) but under Pillow's own hard limit (179M).
OVER_LIMIT_SIDE = 9_000
RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


@dataclass(frozen=True)
class ModeSample:
    name: str  # also the file name the image web serves it under
    mode: str  # the Pillow mode the file opens as
    expected: tuple[tuple[int, int, int], tuple[int, int, int]] | str  # (left, right) RGB, or a refusal


def _halves(mode: str, left, right) -> Image.Image:
    img = Image.new(mode, (W, H), left)
    img.paste(right, (W // 2, 0, W, H))
    return img


def _save(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def raw_png(pixels: np.ndarray, color_type: int, extra: bytes = b"") -> bytes:
    """A PNG written by hand (16-bit samples in any colour type, which Pillow cannot write)."""
    height, width = pixels.shape[:2]
    depth = pixels.dtype.itemsize * 8
    rows = pixels.astype(f">u{pixels.dtype.itemsize}").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def _sixteen(channels: int, left, right) -> np.ndarray:
    px = np.zeros((H, W, channels), np.uint16)
    px[:, : W // 2] = left
    px[:, W // 2 :] = right
    return px


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (W, H), RED), Image.new("RGB", (W, H), BLUE)]
    options = {"lossless": True} if fmt == "WEBP" else {}
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)


def _palette() -> Image.Image:
    img = _halves("P", 1, 2)
    img.putpalette([255, 255, 255, *RED, *BLUE] + [0] * 253 * 3)
    return img


def _mode_bytes(name: str) -> bytes:
    grey16 = np.zeros((H, W), np.uint16)
    grey16[:, : W // 2], grey16[:, W // 2 :] = 0x1000, 0xC000
    makers = {
        "grey16.png": lambda: _save(Image.fromarray(grey16), "PNG"),
        "grey16-trns.png": lambda: raw_png(grey16[..., None], 0, png_chunk(b"tRNS", struct.pack(">H", 0x1000))),
        "rgb16.png": lambda: raw_png(_sixteen(3, (65535, 0, 0), (0, 32768, 65535)), 2),
        "rgba16.png": lambda: raw_png(_sixteen(4, (0, 0, 65535, 65535), (65535, 0, 0, 0)), 6),
        "la16.png": lambda: raw_png(_sixteen(2, (0x8000, 0xFFFF), (0, 0)), 4),
        "palette-trns.png": lambda: _save(_palette(), "PNG", transparency=bytes([255, 255, 128])),
        "palette-key.gif": lambda: _save(_palette(), "GIF", transparency=2),
        "la.png": lambda: _save(_halves("LA", (50, 255), (0, 0)), "PNG"),
        "rgb-trns.png": lambda: _save(_halves("RGB", RED, BLUE), "PNG", transparency=RED),
        "rgba.webp": lambda: _save(_halves("RGBA", (*GREEN, 255), (*RED, 0)), "WEBP", lossless=True),
        "cmyk.tif": lambda: _save(_halves("CMYK", (0, 255, 255, 0), (255, 0, 0, 0)), "TIFF"),
        "cmyk.jpg": lambda: _save(_halves("CMYK", (0, 255, 255, 0), (255, 0, 0, 0)), "JPEG", quality=95),
        "ycbcr.tif": lambda: _save(_halves("RGB", RED, BLUE).convert("YCbCr"), "TIFF"),
        "lab.tif": lambda: _save(_halves("LAB", (128, 128, 128), (255, 128, 128)), "TIFF"),
        "bilevel.png": lambda: _save(_halves("1", 0, 1), "PNG"),
        "bilevel.tif": lambda: _save(_halves("1", 1, 0), "TIFF", compression="group4"),
        "int32.tif": lambda: _save(_halves("I", 70_000, 5), "TIFF"),
        "float.tif": lambda: _save(_halves("F", 0.25, 0.75), "TIFF"),
        "animated.gif": lambda: _animated("GIF"),
        "animated.png": lambda: _animated("PNG"),
        "animated.webp": lambda: _animated("WEBP"),
    }
    return makers[name]()


MODE_SAMPLES = (
    ModeSample("grey16.png", "I;16", ((16, 16, 16), (192, 192, 192))),
    ModeSample("grey16-trns.png", "I;16", (WHITE, (192, 192, 192))),
    ModeSample("rgb16.png", "RGB", (RED, (0, 128, 255))),
    ModeSample("rgba16.png", "RGBA", (BLUE, WHITE)),
    ModeSample("la16.png", "RGBA", ((128, 128, 128), WHITE)),
    ModeSample("palette-trns.png", "P", (RED, (127, 127, 255))),
    ModeSample("palette-key.gif", "P", (RED, WHITE)),
    ModeSample("la.png", "LA", ((50, 50, 50), WHITE)),
    ModeSample("rgb-trns.png", "RGB", (WHITE, BLUE)),
    ModeSample("rgba.webp", "RGBA", (GREEN, WHITE)),
    ModeSample("cmyk.tif", "CMYK", (RED, (0, 255, 255))),
    ModeSample("cmyk.jpg", "CMYK", (RED, (0, 255, 255))),
    ModeSample("ycbcr.tif", "YCbCr", (RED, BLUE)),
    ModeSample("lab.tif", "LAB", ((119, 119, 119), (254, 255, 254))),
    ModeSample("bilevel.png", "1", (BLACK, WHITE)),
    ModeSample("bilevel.tif", "1", (WHITE, BLACK)),
    ModeSample("int32.tif", "I", "unsupported image mode I: 32-bit integer pixels have no standard display range"),
    ModeSample("float.tif", "F", "unsupported image mode F: floating-point pixels have no standard display range"),
    ModeSample("animated.gif", "P", (RED, RED)),
    ModeSample("animated.png", "RGB", (RED, RED)),
    ModeSample("animated.webp", "RGB", (RED, RED)),
)


@lru_cache(maxsize=64)
def mode_sample_bytes(name: str) -> bytes:
    if name not in {s.name for s in MODE_SAMPLES}:
        raise KeyError(name)
    return _mode_bytes(name)


# ---------------------------------------------------------------- pixel bombs: headers claiming huge sizes
@lru_cache(maxsize=1)
def bomb_png() -> bytes:
    """A real, valid 30000x30000 1-bit PNG (~110 KB): decoding it would allocate ~900 MB as RGB."""
    row = b"\x00" + b"\x00" * (BOMB_SIDE // 8 + (BOMB_SIDE % 8 > 0))
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(BOMB_SIDE)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


@lru_cache(maxsize=1)
def bomb_jpg() -> bytes:
    """A 16x16 JPEG whose SOF header is patched to claim 30000x30000."""
    data = bytearray(_save(Image.new("RGB", (16, 16), (128, 128, 128)), "JPEG", quality=50))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", BOMB_SIDE, BOMB_SIDE)
            break
        i += 2 + length
    return bytes(data)


def bomb_gif(screen: int = 1, frame: int = OVER_LIMIT_SIDE) -> bytes:
    """A GIF with a ``screen``-px square screen and a first frame of ``frame`` px square (Pillow grows
    the image to the frame): ~81 MP of LZW data that would decode if the frame were trusted."""
    header = b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, frame, frame, 0)
    return header + descriptor + b"\x02\x02\x4c\x01\x00\x3b"


def bomb_webp(side: int = 16_384) -> bytes:
    """A lossless WebP header claiming ``side`` x ``side`` (the format's maximum) with no pixel data."""
    bits = (side - 1) | ((side - 1) << 14)
    vp8l = b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8
    chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def bomb_tiff(side: int = BOMB_SIDE) -> bytes:
    """A little-endian greyscale TIFF whose first IFD declares ``side`` x ``side``, one deflate strip."""
    strip = zlib.compress(b"\x00" * 4096)
    entries = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 8),
               (277, 3, 1), (278, 4, side), (279, 4, len(strip))]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0))
    return b"II*\x00" + struct.pack("<I", 8 + len(strip)) + strip + ifd + b"\x00\x00\x00\x00"


def bomb_bmp(side: int = BOMB_SIDE) -> bytes:
    """A 24-bit BMP header claiming ``side`` x ``side`` followed by a few bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 64, 0, 0, 14 + len(info)) + info + b"\x00" * 64


PIXEL_BOMBS = {  # name -> (bytes maker, the size the crawler must report)
    "png": (bomb_png, (BOMB_SIDE, BOMB_SIDE)),
    "jpg": (bomb_jpg, (BOMB_SIDE, BOMB_SIDE)),
    "gif": (bomb_gif, (OVER_LIMIT_SIDE, OVER_LIMIT_SIDE)),
    "webp": (bomb_webp, (16_384, 16_384)),
    "tif": (bomb_tiff, (BOMB_SIDE, BOMB_SIDE)),
    "bmp": (bomb_bmp, (BOMB_SIDE, BOMB_SIDE)),
}


# ---------------------------------------------------------------- repeated deflate (fast to build)
def repeated_deflate(block: bytes, times: int, wrapper: str = "raw") -> bytes:
    """``block`` x ``times`` as one deflate stream, built by compressing ``block`` once (a full flush
    makes it self-contained) and repeating the result: a 1 GiB bomb takes milliseconds, not the
    ~30 s zlib needs to compress 1 GiB. ``wrapper``: raw, zlib (RFC 1950) or gzip (RFC 1952)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    body = piece * times + b"\x03\x00"  # a final, empty fixed-Huffman block
    if wrapper == "raw":
        return body
    if wrapper == "zlib":
        adler = 1
        for _ in range(times):
            adler = zlib.adler32(block, adler)
        return b"\x78\xda" + body + struct.pack(">I", adler)
    crc = 0
    for _ in range(times):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + body + struct.pack("<II", crc, (len(block) * times) & 0xFFFFFFFF)


# ---------------------------------------------------------------- images just under the pixel limit
NEAR_LIMIT_SIDE = 7_900  # 62.4 MP: under the 64 MP default limit


# WebP and progressive JPEG have no shortcut: an encoder must see every pixel (~4 s at 36 MP here).
_ENCODED_SIDE = 6_000


@lru_cache(maxsize=8)
def near_limit_image(fmt: str, side: int | None = None) -> bytes:
    """A flat ``side`` x ``side`` image: legitimate, small on the wire, and about the most memory one
    decode may take under the default limit. ``fmt``: png (RGBA, 4 B/px decoded), tif (CMYK), gif
    (1 B/px), all 62.4 MP by default; webp (still, lossless) and jpg (progressive: libjpeg buffers
    every coefficient), 36 MP by default."""
    side = side or (_ENCODED_SIDE if fmt in ("webp", "jpg") else NEAR_LIMIT_SIDE)
    if fmt == "png":
        return _flat_png(side)
    if fmt == "tif":
        return _flat_cmyk_tiff(side)
    if fmt == "webp":
        return _save(Image.new("RGB", (side, side), (30, 120, 200)), "WEBP", lossless=True, quality=0, method=0)
    if fmt == "jpg":
        return _save(Image.new("RGB", (side, side), (30, 120, 200)), "JPEG", quality=50, progressive=True)
    if fmt == "gif":
        return _save(Image.new("P", (side, side), 3), "GIF")
    raise ValueError(f"no near-limit image for {fmt!r}")


def _rows_per_block(side: int) -> int:
    return next(r for r in range(min(side, 100), 0, -1) if side % r == 0)


def _flat_png(side: int) -> bytes:
    """A half-transparent RGBA PNG; its IDAT is one compressed block of rows, repeated."""
    rows = _rows_per_block(side)
    block = (b"\x00" + bytes((30, 120, 200, 128)) * side) * rows
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    idat = repeated_deflate(block, side // rows, "zlib")
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _flat_cmyk_tiff(side: int) -> bytes:
    """A CMYK TIFF whose deflate strips all point at one compressed strip."""
    rows = _rows_per_block(side)
    strips = side // rows
    strip = zlib.compress(bytes((10, 200, 30, 0)) * side * rows, 9)
    head = 8
    bits_at = head + len(strip)
    offsets_at = bits_at + 8
    counts_at = offsets_at + 4 * strips
    ifd_at = counts_at + 4 * strips
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 4, bits_at), (259, 3, 1, 8), (262, 3, 1, 5),
               (273, 4, strips, offsets_at), (277, 3, 1, 4), (278, 4, 1, rows), (279, 4, strips, counts_at),
               (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        inline = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + inline
    return (b"II*\x00" + struct.pack("<I", ifd_at) + strip + struct.pack("<4H", 8, 8, 8, 8)
            + struct.pack(f"<{strips}I", *([head] * strips)) + struct.pack(f"<{strips}I", *([len(strip)] * strips))
            + ifd + b"\x00\x00\x00\x00")


# ---------------------------------------------------------------- compression bombs (Content-Encoding)
@lru_cache(maxsize=4)
def compression_bomb(coding: str, inflated: int = 1 << 30) -> bytes:
    """``inflated`` zero bytes (1 GiB by default) compressed with ``coding`` (gzip, deflate = zlib
    wrapper, raw-deflate): about 1 MB on the wire, a ~1000x bomb."""
    wrapper = {"gzip": "gzip", "deflate": "zlib", "raw-deflate": "raw"}[coding]
    return repeated_deflate(bytes(1 << 20), inflated >> 20, wrapper)


def endless_gzip():
    """An endless gzip stream of zeros, piece by piece (~1 KB of wire per MB inflated)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    while True:
        yield comp.compress(block) + comp.flush(zlib.Z_SYNC_FLUSH)


def gzip_bytes(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()
