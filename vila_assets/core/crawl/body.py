"""A response body assembled under a cap on its DECODED size.

We ask for ``Accept-Encoding: identity``, but a server may compress anyway, and a gzip or deflate stream
inflates up to ~1000x: a 20 MB cap checked on the wire would let 20 GB into memory. So the body is
decoded here, incrementally, with zlib's ``max_length`` bounding every call: no single step ever
produces more than the bytes left under the cap (plus one, to notice the overflow). Encodings we cannot
bound this way (br, zstd, compress, anything unknown) are refused with a reason rather than stored
undecoded.
"""

from __future__ import annotations

import zlib

# Content-Encoding tokens we inflate (zlib ``wbits``); "deflate" may be zlib-wrapped (RFC 9110) or raw.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Input per decompress call, and output per call: bodies grow in pieces of at most 1 MiB.
_STEP = 64 * 1024
_OUT_STEP = 1 << 20


class BodyTooLarge(Exception):
    """The decoded body passed the cap; the download is abandoned."""


class BadEncoding(Exception):
    """The body cannot be decoded (unsupported encoding or a corrupt stream); the message says which."""


def parse_encodings(header: str | None) -> list[str]:
    """The Content-Encoding codings in the order they were applied, ``identity`` dropped.
    Raises ``BadEncoding`` for a coding we do not decode."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    for c in codings:
        if c not in _WBITS:
            raise BadEncoding(f"unsupported content-encoding: {c[:20]}")
    return codings


class _Inflater:
    """One coding's decoder whose output per call is bounded."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._wbits = _WBITS[coding]
        self._z = zlib.decompressobj(self._wbits)
        self._started = False

    def decompress(self, data, max_length: int) -> bytes:
        try:
            out = self._z.decompress(data, max_length)
        except zlib.error:
            if self.coding != "deflate" or self._started:
                raise BadEncoding(f"corrupt {self.coding} body") from None
            # Raw deflate without the zlib wrapper (what some servers send as "deflate").
            self._wbits = -zlib.MAX_WBITS
            self._z = zlib.decompressobj(self._wbits)
            return self.decompress(data, max_length)
        self._started = True
        return out

    @property
    def pending(self) -> bytes:
        """Input accepted but not yet turned into output (because of ``max_length``)."""
        return self._z.unconsumed_tail

    @property
    def finished(self) -> bool:
        return self._z.eof

    def next_member(self) -> bytes | None:
        """At the end of a gzip member followed by another one (concatenated members are valid gzip):
        start decoding it and return its first bytes. Anything else after the end is ignored."""
        rest = self._z.unused_data
        if self.coding == "deflate" or not rest.startswith(b"\x1f\x8b"):
            return None
        self._z = zlib.decompressobj(self._wbits)
        return rest


class BoundedBody:
    """Collects a body chunk by chunk; raises ``BodyTooLarge`` as soon as the wire bytes or the decoded
    bytes (after every coding, and at every stage of a stacked coding) pass ``max_bytes``.

    Memory: the decoded bytes so far (<= ``max_bytes`` + 1) and one zlib window per coding. Chunks of an
    identity body are kept as they come and joined once; a single chunk is returned without a copy."""

    def __init__(self, content_encoding: str | None, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.wire_bytes = 0
        self._stages = [_Inflater(c) for c in reversed(parse_encodings(content_encoding))]
        self._produced = [0] * len(self._stages)
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def encoded(self) -> bool:
        return bool(self._stages)

    def feed(self, chunk: bytes) -> None:
        self.wire_bytes += len(chunk)
        if self.wire_bytes > self.max_bytes:
            raise BodyTooLarge(f"too large: body > {self.max_bytes} bytes")
        self._push(0, chunk)

    def _push(self, stage: int, data: bytes) -> None:
        """Run ``data`` through stages ``stage``.. and keep what comes out of the last one."""
        if stage == len(self._stages):
            self._keep(data)
            return
        inflater = self._stages[stage]
        for piece in self._pieces(inflater, memoryview(data)):
            out = inflater.decompress(piece, min(_OUT_STEP, self.max_bytes - self._produced[stage] + 1))
            self._produced[stage] += len(out)
            if self._produced[stage] > self.max_bytes:
                raise BodyTooLarge(f"too large: decoded body > {self.max_bytes} bytes")
            if out:
                self._push(stage + 1, out)

    @staticmethod
    def _pieces(inflater: _Inflater, view: memoryview):
        """The input of one stage in steps of at most ``_STEP`` bytes, re-offering what zlib left
        unconsumed first; stops at the end of the (last) stream."""
        pos = 0
        while True:
            if inflater.pending:
                yield inflater.pending
            elif inflater.finished:
                follow = inflater.next_member()
                if follow is None:
                    return  # trailing bytes after the stream are ignored, as browsers do
                yield follow
            elif pos < len(view):
                yield view[pos : pos + _STEP]
                pos += _STEP
            else:
                return

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.max_bytes:
            raise BodyTooLarge(f"too large: decoded body > {self.max_bytes} bytes")
        self._parts.append(data)

    def result(self) -> bytes:
        """The decoded body (call once, after the last chunk)."""
        parts, self._parts = self._parts, []
        return parts[0] if len(parts) == 1 else b"".join(parts)
