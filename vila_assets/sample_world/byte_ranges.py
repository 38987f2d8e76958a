"""HTTP ``Range: bytes=...`` requests as the sample world's servers answer them (RFC 9110, one range)."""

from __future__ import annotations

import re


def parse_byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single byte range (``a-b``, ``a-``, ``-n``), clipped to ``size``; None when it
    cannot be satisfied (the server answers 416)."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not m or m.group(1) == m.group(2) == "":
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n and size else None
    first = int(m.group(1))
    last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    return (first, last) if first <= last and first < size else None
