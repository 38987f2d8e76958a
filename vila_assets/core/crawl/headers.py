"""What the first bytes of a download say, read without any decoder: format, declared size, JPEG layout.

The size check against ``max_pixels`` runs on ``declared_size`` before any library sees the bytes,
and again on Pillow's lazily parsed size (which can differ: a GIF frame may be larger than its screen).
"""

from __future__ import annotations

import struct

# SOF markers: baseline/extended (0xC0, 0xC1), progressive (0xC2), lossless and arithmetic variants.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def sniff(data: bytes) -> str | None:
    """The Pillow format name from magic bytes; ``None`` when the bytes are not an image we accept."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def describe_non_image(data: bytes) -> str:
    """A short reason for bytes that ``sniff`` rejected: what they look like instead."""
    if not data:
        return "empty body"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<"):
        if b"<svg" in head:
            return "not an image (svg)"
        if b"<html" in head or b"<!doctype html" in head or b"<head" in head or b"<body" in head:
            return "not an image (html)"
        return "not an image (xml/markup)"
    if head.startswith((b"{", b"[")):
        return "not an image (json)"
    return "not an image (unknown format)"


def declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) as the header declares it, or None when the header is too short to say."""
    try:
        reader = _READERS.get(fmt)
        return reader(data) if reader else None
    except (struct.error, IndexError, ValueError):
        return None


def _png(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def _gif(data: bytes) -> tuple[int, int]:
    """The larger of the logical screen and the first frame (Pillow grows the image to hold the frame)."""
    sw, sh = struct.unpack("<HH", data[6:10])
    flags = data[10]
    i = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while i < len(data) and data[i] == 0x21:  # extension blocks before the first image descriptor
        i += 2
        while data[i]:
            i += data[i] + 1
        i += 1
    if i < len(data) and data[i] == 0x2C:
        x, y, fw, fh = struct.unpack("<HHHH", data[i + 1 : i + 9])
        return max(sw, x + fw), max(sh, y + fh)
    return sw, sh


def _jpeg(data: bytes) -> tuple[int, int] | None:
    sof = jpeg_frame(data)
    return None if sof is None else (sof[1], sof[0])


def jpeg_frame(data: bytes) -> tuple[int, int, int, bool] | None:
    """(height, width, coefficient bytes per pixel, progressive) from the JPEG's SOF segment, or None.

    Coefficient bytes: a progressive decode buffers every DCT coefficient of the image (2 bytes each,
    per component at its sampled resolution) however small the output, so it is its memory floor."""
    try:
        return _jpeg_frame(data)
    except (struct.error, IndexError, ValueError):
        return None


def _jpeg_frame(data: bytes) -> tuple[int, int, int, bool] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _SOF:
            h, w, n = struct.unpack(">HHB", data[i + 5 : i + 10])
            factors = [(data[i + 11 + 3 * c] >> 4, data[i + 11 + 3 * c] & 15) for c in range(n)]
            hmax = max(f[0] for f in factors) or 1
            vmax = max(f[1] for f in factors) or 1
            per_px = sum(2 * fh * fv / (hmax * vmax) for fh, fv in factors)
            return h, w, int(per_px + 0.999), marker in _PROGRESSIVE_SOF
        i += 2 + length
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _bmp(data: bytes) -> tuple[int, int]:
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _tiff(data: bytes) -> tuple[int, int] | None:
    """ImageWidth / ImageLength of the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    found: dict[int, int] = {}
    for k in range(min(count, 512)):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            fmt = order + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack(fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
    return (found[256], found[257]) if len(found) == 2 else None


_READERS = {"PNG": _png, "GIF": _gif, "JPEG": _jpeg, "WEBP": _webp, "BMP": _bmp, "TIFF": _tiff}
