"""The sample world's archive host on 127.0.0.1: small image archives at the official URL paths.

The image roots' official archives live on a handful of hosts (``images.cocodataset.org/zips/...``,
``downloads.cs.stanford.edu/nlp/data/gqa/...``, ``dl.fbaipublicfiles.com/textvqa/...``,
``cs.stanford.edu/people/rak248/...``) and OCR-VQA's covers on Amazon's image host. This server serves a
directory under the same paths, so the ``sample_world`` profile only maps each official host to this
server's base URL (``ImageRootsSource.mirrors``) and every path stays as in production.

It speaks what a resumable download needs: ``Range: bytes=a-b`` / ``a-`` / ``-n`` (206 with
``Content-Range``, 416 past the end), a strong ``ETag`` and ``If-Range``. ``drop_once(path)`` makes the
next GET of ``path`` send half its body and close the connection (the client must resume);
``fail_next(path, status, times)`` answers with an error status first. ``requests`` records every GET.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from vila_assets.sample_world.byte_ranges import parse_byte_range
from vila_assets.sample_world.sources import SourceContext

ARCHIVES_DIR = "archives"  # beside the world's hub directory
# OCR-VQA's dataset.json sits in a Google Drive folder upstream; here it is served at this path
OCR_VQA_DATASET = "/ocr-vqa/dataset.json"
# ShareGPT4V's own roots have no stable official URL ([U]): the sample world serves them at these paths,
# SA-1B as two tars of flat ``sa_<n>.jpg`` + ``sa_<n>.json`` (root -> (path, folder inside, include))
SHAREGPT4V_ARCHIVES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "sam/images": (("/sa-1b/sa_000000.tar", "", "*.jpg"), ("/sa-1b/sa_000001.tar", "", "*.jpg")),
    "wikiart/images": (("/sharegpt4v/wikiart.zip", "wikiart/images", ""),),
    "web-celebrity/images": (("/sharegpt4v/web-celebrity.zip", "web-celebrity/images", ""),),
    "web-landmark/images": (("/sharegpt4v/web-landmark.zip", "web-landmark/images", ""),),
    "share_textvqa/images": (("/sharegpt4v/share_textvqa.zip", "share_textvqa/images", ""),),
}


def archives_dir(ctx: SourceContext) -> Path:
    """Where the source builders write what this server serves."""
    return ctx.hub_root.parent / ARCHIVES_DIR


def served_archives() -> dict[str, tuple[tuple[str, str, str], ...]]:
    """Per image root fetched over HTTP, the archives served: (URL path, folder inside, include glob). The
    official roots' paths are those of their official URLs."""
    from vila_assets.core.image_roots import OFFICIAL_ARCHIVES

    official = {root: tuple((urlsplit(a.url).path, a.strip, a.include) for a in archives)
                for root, archives in OFFICIAL_ARCHIVES.items()}
    return {**official, **SHAREGPT4V_ARCHIVES}


def image_roots_source(base: str, **overrides):
    """The ``image_roots_source`` resource of the ``sample_world`` profile: every official host mapped to
    this server at ``base``, ShareGPT4V's roots and OCR-VQA's dataset.json pointed at their paths here
    (``overrides``: other field values)."""
    from vila_assets.assets.llava.sources import Archive, ImageRootsSource
    from vila_assets.core.image_roots import OFFICIAL_HOSTS, field_name

    sharegpt4v = {field_name(root): [Archive(url=base + path, strip=strip, include=include)
                                     for path, strip, include in archives]
                  for root, archives in SHAREGPT4V_ARCHIVES.items()}
    fields = {"mirrors": {host: base for host in OFFICIAL_HOSTS}, "ocr_vqa_dataset": base + OCR_VQA_DATASET,
              **sharegpt4v, **overrides}
    return ImageRootsSource(**fields)


class ArchiveWeb:
    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root).resolve()
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._drops: dict[str, int] = {}  # path -> bytes to send before closing, once
        self._failures: dict[str, list] = {}  # path -> [status, times left]
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header) of every GET

    # --- faults ----------------------------------------------------------------------------------------
    def drop_once(self, path: str, after: int | None = None) -> None:
        """The next GET of ``path`` sends ``after`` body bytes (default: half) and closes the connection."""
        with self._lock:
            self._drops[path] = -1 if after is None else after

    def fail_next(self, path: str, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures[path] = [status, times]

    def _take_fault(self, path: str, size: int) -> tuple[int | None, int | None]:
        """(status to fail with, body bytes before a drop) for this request, consuming them."""
        with self._lock:
            failure = self._failures.get(path)
            if failure and failure[1] > 0:
                failure[1] -= 1
                return failure[0], None
            drop = self._drops.pop(path, None)
        return None, (size // 2 if drop == -1 else drop)

    # --- serving ---------------------------------------------------------------------------------------
    def file(self, path: str) -> Path | None:
        local = (self.root / unquote(path).lstrip("/")).resolve()
        if not local.is_relative_to(self.root) or not local.is_file():
            return None
        return local

    def start(self) -> str:
        web = self

        class Handler(_ArchiveHandler):
            archive_web = web

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="archive-web", daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _etag(path: Path) -> str:
    st = path.stat()
    return '"' + hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:20] + '"'


class _ArchiveHandler(BaseHTTPRequestHandler):
    archive_web: ArchiveWeb
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        web, path = self.archive_web, urlsplit(self.path).path
        if not head:
            with web._lock:
                web.requests.append((path, self.headers.get("Range")))
        local = web.file(path)
        if local is None:
            return self._status(404)
        size, etag = local.stat().st_size, _etag(local)
        status, drop = web._take_fault(path, size) if not head else (None, None)
        if status is not None:
            return self._status(status)
        first, last = 0, size - 1
        ranged = self.headers.get("Range")
        if ranged and self.headers.get("If-Range") not in (None, etag):
            ranged = None  # the client's part is of another version: send the whole file
        if ranged:
            span = parse_byte_range(ranged, size)
            if span is None:
                return self._status(416, {"Content-Range": f"bytes */{size}"})
            first, last = span
        headers = {"Content-Type": mimetypes.guess_type(local.name)[0] or "application/octet-stream",
                   "Content-Length": str(last - first + 1), "ETag": etag, "Accept-Ranges": "bytes"}
        if ranged:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        self._head(206 if ranged else 200, headers)
        if not head:
            self._body(local, first, last - first + 1, drop)

    def _body(self, local: Path, offset: int, length: int, drop: int | None) -> None:
        send = length if drop is None else min(drop, length)
        with open(local, "rb") as fh:
            fh.seek(offset)
            while send > 0:
                block = fh.read(min(send, 1 << 16))
                if not block:
                    break
                self.wfile.write(block)
                send -= len(block)
        if drop is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _status(self, status: int, headers: dict[str, str] | None = None) -> None:
        body = f"{status}\n".encode()
        self._head(status, {"Content-Type": "text/plain", "Content-Length": str(len(body)), **(headers or {})})
        if self.command != "HEAD":
            self.wfile.write(body)
