"""Resumable HTTP downloads of large archives (COCO's train2017.zip is ~18 GB, GQA's images.zip ~20 GB).

``download(url, dest)`` writes into ``<dest>.part`` and asks for ``Range: bytes=<part size>-`` whenever
a ``.part`` is already there, so a dropped connection or a killed run continues where it stopped instead
of starting over. ``If-Range`` carries the validator (ETag or Last-Modified) the first response gave:
when the file on the server changed in between, the server answers with the whole new file and the stale
part is discarded. The finished file is checked against the size the server declared and, when given,
the expected size and sha256; only then is it renamed to ``dest`` (a reader never sees a partial file).
Every error names the URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

_CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(RuntimeError):
    """A download that could not complete or did not verify; the message names the URL."""


@dataclass(frozen=True)
class Downloaded:
    url: str  # what was asked for
    fetched_from: str  # where it came from (a mirror of ``url``, or ``url`` itself)
    path: Path
    size: int
    sha256: str
    resumed_from: int  # bytes of an earlier attempt's .part this call continued from
    reconnects: int  # connections this call re-opened after a drop
    reused: bool  # already complete from an earlier call: nothing was fetched


@dataclass
class _State:
    """What one download has so far: the validator of the file being fetched and its declared size."""

    url: str
    validator: str | None = None
    total: int | None = None
    reconnects: int = 0


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".download.json")


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _load_state(part: Path, url: str) -> _State:
    """The validator and size an earlier run recorded for its ``.part`` (a part of another URL is dropped)."""
    try:
        saved = json.loads(part.with_name(part.name + ".json").read_text())
    except (OSError, ValueError):
        saved = None
    if saved is None or saved.get("url") != url:
        part.unlink(missing_ok=True)
        return _State(url)
    return _State(url, saved.get("validator"), saved.get("total"))


def _save_state(part: Path, state: _State) -> None:
    meta = part.with_name(part.name + ".json")
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": state.url, "validator": state.validator, "total": state.total}))
    os.replace(tmp, meta)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _reuse(url: str, dest: Path, size: int | None, sha256: str | None) -> dict | None:
    """The record of an earlier complete download of ``url`` into ``dest``, when it still matches."""
    try:
        done = json.loads(_sidecar(dest).read_text())
    except (OSError, ValueError):
        return None
    if done.get("url") != url or not dest.is_file() or dest.stat().st_size != done.get("size"):
        return None
    if (size is not None and size != done["size"]) or (sha256 is not None and sha256 != done.get("sha256")):
        return None
    return done


def _validator(response: httpx.Response) -> str | None:
    etag = response.headers.get("etag")
    if etag and not etag.startswith("W/"):  # a weak ETag may not be used with If-Range
        return etag
    return response.headers.get("last-modified")


def _declared_total(where: str, response: httpx.Response, offset: int) -> int | None:
    """The full file size the response declares (Content-Range total, else Content-Length + offset)."""
    if response.status_code == 206:
        m = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if not m:
            raise DownloadError(f"{where}: 206 without a usable Content-Range "
                                f"({response.headers.get('content-range')!r})")
        if int(m.group(1)) != offset:
            raise DownloadError(f"{where}: asked for bytes from {offset}, the server sent from {m.group(1)}")
        return None if m.group(3) == "*" else int(m.group(3))
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def _open_request(client: httpx.Client, url: str, offset: int, state: _State):
    headers = {"Accept-Encoding": "identity"}  # the byte offsets are those of the file itself
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.validator:
            headers["If-Range"] = state.validator
    return client.stream("GET", url, headers=headers)


def _receive(where: str, response: httpx.Response, part: Path, state: _State,
             on_bytes: Callable[[int], None] | None) -> None:
    """Append the body of an open response to ``part`` (restarting it on a 200)."""
    offset = part.stat().st_size if part.exists() else 0
    if response.status_code == 200 and offset:
        offset = 0  # the server ignored the range (or the file changed under If-Range): start over
    total = _declared_total(where, response, offset)
    if state.total is not None and total is not None and total != state.total and response.status_code == 206:
        raise DownloadError(f"{where}: the server's size changed from {state.total} to {total} bytes mid-download")
    state.total = total if total is not None else state.total
    state.validator = _validator(response) or state.validator
    _save_state(part, state)
    with open(part, "r+b" if offset else "wb") as fh:
        fh.seek(offset)
        fh.truncate()
        for block in response.iter_bytes():  # as received: a drop loses nothing already read
            fh.write(block)
            if on_bytes is not None:
                on_bytes(len(block))


def _attempt(client: httpx.Client, where: str, fetch_url: str, part: Path, state: _State,
             on_bytes: Callable[[int], None] | None) -> bool:
    """One request; True when ``part`` holds the whole file. Raises DownloadError for a permanent error and
    httpx.TransportError / _Retry for a transient one."""
    offset = part.stat().st_size if part.exists() else 0
    if state.total is not None and offset == state.total:
        return True
    with _open_request(client, fetch_url, offset, state) as response:
        if response.status_code == 416 and offset:
            m = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("content-range", "").strip())
            if m and int(m.group(1)) == offset:
                state.total = offset
                return True
            part.unlink()  # the part is longer than the file: it belongs to another file
            raise _Retry(f"range {offset}- not satisfiable; restarting")
        if response.status_code in _RETRY_STATUS:
            raise _Retry(f"HTTP {response.status_code}")
        if response.status_code not in (200, 206):
            raise DownloadError(f"{where}: HTTP {response.status_code} {response.reason_phrase}")
        _receive(where, response, part, state, on_bytes)
    size = part.stat().st_size
    if state.total is not None and size < state.total:
        raise _Retry(f"connection closed at byte {size} of {state.total}")
    if state.total is None:
        state.total = size  # no declared size (chunked): a clean end of body is the end of the file
    return size == state.total


class _Retry(Exception):
    """A transient failure: try again from the current end of the part."""


def _verify(where: str, part: Path, state: _State, size: int | None, sha256: str | None) -> str:
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(f"{where}: {got} bytes, expected {size} (the archive differs from the configured one)")
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise DownloadError(f"{where}: sha256 {digest}, expected {sha256.lower()}")
    return digest


def download(url: str, dest: str | os.PathLike[str], *, expected_size: int | None = None,
             expected_sha256: str | None = None, fetch_url: str | None = None, retries: int = 5,
             timeout: float = 60.0, backoff: float = 1.0, on_bytes: Callable[[int], None] | None = None,
             transport: httpx.BaseTransport | None = None) -> Downloaded:
    """Download ``url`` (from ``fetch_url``, a mirror, when given) into ``dest``, resuming a ``.part``.

    ``retries``: attempts in a row that may fail without receiving a byte (a connection that delivers
    bytes before it drops does not use one up). ``on_bytes`` sees each received block's length."""
    dest, fetch_url = Path(dest), fetch_url or url
    where = url if fetch_url == url else f"{url} (via {fetch_url})"
    if done := _reuse(url, dest, expected_size, expected_sha256):
        return Downloaded(url, fetch_url, dest, done["size"], done["sha256"], 0, 0, True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part(dest)
    state, failures = _load_state(part, fetch_url), 0
    resumed_from = part.stat().st_size if part.exists() else 0
    with httpx.Client(timeout=timeout, follow_redirects=True, transport=transport) as client:
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                if _attempt(client, where, fetch_url, part, state, on_bytes):
                    break
            except (httpx.TransportError, _Retry) as exc:
                progressed = part.exists() and part.stat().st_size > before
                failures = 0 if progressed else failures + 1
                if failures > retries:
                    raise DownloadError(
                        f"{where}: gave up after {retries + 1} attempts without progress: {exc}") from exc
                state.reconnects += 1
                time.sleep(min(backoff * 2 ** max(failures - 1, 0), 30.0) if failures else 0)
    digest = _verify(where, part, state, expected_size, expected_sha256)
    size = part.stat().st_size
    os.replace(part, dest)
    part.with_name(part.name + ".json").unlink(missing_ok=True)
    tmp = _sidecar(dest).with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "size": size, "sha256": digest}))
    os.replace(tmp, _sidecar(dest))
    return Downloaded(url, fetch_url, dest, size, digest, resumed_from, state.reconnects, False)


def mirrored(url: str, mirrors: dict[str, str]) -> str:
    """``url`` with its longest matching prefix in ``mirrors`` replaced (``{}``: unchanged). Maps an
    official host to a mirror or, in the sample world, to the loopback server."""
    best = max((p for p in mirrors if url.startswith(p.rstrip("/") + "/")), key=len, default=None)
    return url if best is None else mirrors[best].rstrip("/") + url[len(best.rstrip("/")):]


__all__ = ["DownloadError", "Downloaded", "download", "mirrored", "sha256_of"]
