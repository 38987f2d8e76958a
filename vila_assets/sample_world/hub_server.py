"""A fake Hugging Face hub on 127.0.0.1 that the real ``huggingface_hub`` client downloads from.

It serves a directory laid out as ``<root>/datasets/<org>/<name>/...`` and ``<root>/models/<org>/<name>/...``
and speaks the routes the client uses (``huggingface_hub`` 2.x):

- ``HEAD|GET /[datasets/]<repo>/resolve/<rev>/<path>``: the file, with ``X-Repo-Commit`` and a quoted
  ``ETag`` (both required by the client), ``Content-Length``, and ``Range`` -> 206 for resumed downloads;
- ``GET /api/<datasets|models>/<repo>/revision/<rev>``: ``{id, sha, siblings}``;
- ``GET /api/<datasets|models>/<repo>/tree/<rev>[/<path>]``: ``[{type, path, size, oid}]``;
- ``GET /api/<datasets|models>/<repo>``: the same info as ``revision/main``;
- unknown things: 404 with ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound``.

A repo's commit sha is derived from its file list and contents, so it changes exactly when the data does,
and both ``main`` and that sha resolve. The server binds 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vila_assets.sample_world.byte_ranges import parse_byte_range

REPO_TYPES = {"datasets": "dataset", "models": "model"}
_CHUNK = 1 << 20


@dataclass
class _Repo:
    root: Path
    repo_id: str

    @cached_property
    def files(self) -> dict[str, Path]:
        return {
            p.relative_to(self.root).as_posix(): p
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
        }

    @cached_property
    def oids(self) -> dict[str, str]:
        out = {}
        for rel, p in self.files.items():
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(_CHUNK), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
        return out

    @cached_property
    def sha(self) -> str:
        h = hashlib.sha1()
        for rel, oid in self.oids.items():
            h.update(f"{rel}\0{oid}\n".encode())
        return h.hexdigest()


class FakeHub:
    """``with FakeHub(root) as endpoint:`` serves ``root`` until the block ends."""

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root)
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> str:
        hub = self

        class Handler(_HubHandler):
            fake_hub = hub

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self.endpoint

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- repos -----------------------------------------------------------------------------------
    def repo_dir(self, repo_id: str, repo_type: str = "dataset") -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def repo(self, kind: str, repo_id: str) -> _Repo | None:
        with self._lock:
            key = (kind, repo_id)
            if key not in self._repos:
                d = self.root / kind / repo_id
                if not d.is_dir():
                    return None
                self._repos[key] = _Repo(d, repo_id)
            return self._repos[key]

    def invalidate(self) -> None:
        """Forget cached listings and shas (after the files on disk changed)."""
        with self._lock:
            self._repos.clear()


_RESOLVE = re.compile(r"^/(?:(datasets|models)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_API = re.compile(r"^/api/(datasets|models)/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?$")


class _HubHandler(BaseHTTPRequestHandler):
    fake_hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "vila-assets-fake-hub/1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def do_HEAD(self):
        self._dispatch(head=True)

    def do_GET(self):
        self._dispatch(head=False)

    # --- routing ---------------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        m = _RESOLVE.match(path)
        if m:
            kind = m.group(1) or "models"
            return self._resolve(kind, m.group(2), m.group(3), m.group(4), head)
        m = _API.match(path)
        if m and not head:
            kind, repo_id, verb, rev, sub = m.groups()
            return self._api(kind, repo_id, verb or "revision", rev or "main", sub or "")
        self._error(404, "EntryNotFound", f"no route for {path}")

    def _lookup(self, kind: str, repo_id: str, rev: str) -> _Repo | None:
        repo = self.fake_hub.repo(kind, repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"repository {repo_id} not found")
            return None
        if rev not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", f"revision {rev} not found in {repo_id}")
            return None
        return repo

    def _resolve(self, kind: str, repo_id: str, rev: str, rel: str, head: bool) -> None:
        repo = self._lookup(kind, repo_id, rev)
        if repo is None:
            return
        if rel not in repo.files:
            self._error(404, "EntryNotFound", f"{rel} not found in {repo_id}", commit=repo.sha)
            return
        fpath = repo.files[rel]
        size = fpath.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and not head:
            span = parse_byte_range(rng, size)
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            (start, end), status = span, 206
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("ETag", f'"{repo.oids[rel]}"')
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length if not head else size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        with open(fpath, "rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                block = fh.read(min(_CHUNK, left))
                if not block:
                    break
                self.wfile.write(block)
                left -= len(block)

    def _api(self, kind: str, repo_id: str, verb: str, rev: str, sub: str) -> None:
        repo = self._lookup(kind, repo_id, rev)
        if repo is None:
            return
        if verb == "revision":
            body = {
                "id": repo_id,
                "sha": repo.sha,
                "private": False,
                "siblings": [{"rfilename": rel} for rel in repo.files],
            }
            return self._json(body, repo.sha)
        prefix = sub.strip("/")
        recursive = "recursive=true" in urllib.parse.urlsplit(self.path).query.lower()
        entries, dirs = [], set()
        for rel in repo.files:
            if prefix and not rel.startswith(prefix + "/"):
                continue
            rest = rel[len(prefix) + 1 :] if prefix else rel
            if not recursive and "/" in rest:
                dirs.add((prefix + "/" if prefix else "") + rest.split("/", 1)[0])
                continue
            if recursive:
                parts = rel.split("/")[:-1]
                for i in range(len(prefix.split("/")) if prefix else 0, len(parts)):
                    dirs.add("/".join(parts[: i + 1]))
            entries.append(
                {"type": "file", "path": rel, "size": repo.files[rel].stat().st_size, "oid": repo.oids[rel]}
            )
        listing = [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(dirs)]
        self._json(listing + entries, repo.sha)

    # --- responses -------------------------------------------------------------------------------
    def _json(self, body: object, commit: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
