"""``dagster dev`` on 127.0.0.1 for the browser test and the backfill benchmark.

``with DagsterDev(home, workspace, env=...) as dev:`` starts ``dagster dev`` (webserver, daemon and one
code server, all on loopback) in its own process group, waits until the code location is loaded and the
daemons report healthy, and on exit stops the whole group (SIGTERM, then SIGKILL): run workers the
daemon launched go with it. ``dev.url`` is the webserver; ``dev.gql(query, **variables)`` asks its GraphQL
endpoint; ``dev.pids()`` names the webserver, daemon and code-server processes (for memory sampling).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
# Debian's Chromium, driven by Playwright (never `playwright install`): headless, no sandbox (CI runs as
# root), nothing that talks to the network on its own.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """``dagster dev -h 127.0.0.1`` with ``$DAGSTER_HOME=home`` over ``workspace``; log in ``home/dev.log``."""

    def __init__(self, home: Path, workspace: Path, env: Mapping[str, str] | None = None,
                 daemons: tuple[str, ...] = ("BACKFILL", "QUEUED_RUN_COORDINATOR")):
        self.home, self.workspace = Path(home), Path(workspace)
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(self.home)}
        self.daemons = daemons
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "dev.log"
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client(timeout=120)

    def __enter__(self) -> DagsterDev:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(self.port), "-w", str(self.workspace)],
            cwd=self.workspace.parent, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def gql(self, query: str, **variables) -> dict:
        response = self.http.post(f"{self.url}/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL error: {body['errors'][0].get('message')}")
        return body["data"]

    def _ready(self) -> bool:
        try:
            entries = self.gql(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
        except (httpx.HTTPError, RuntimeError, KeyError):
            return False
        for e in entries:
            error = e["locationOrLoadError"] or {}
            if error.get("__typename") == "PythonError":
                raise RuntimeError(f"code location {e['name']} failed to load: {error['message']}")
        if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
            return False
        statuses = self.gql(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        healthy = {s["daemonType"] for s in statuses if s["healthy"]}
        return set(self.daemons) <= healthy

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Until the code location is loaded and the daemons named in ``daemons`` report healthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(1.0)
        raise TimeoutError(f"dagster dev not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def pids(self) -> dict[str, int]:
        """``webserver``, ``daemon`` and ``code_server`` process ids (the children of ``dagster dev``)."""
        found = {}
        for pid in _children(self.proc.pid):
            cmd = cmdline(pid)
            if "dagster_webserver" in cmd:
                found["webserver"] = pid
            elif "dagster._daemon" in cmd:
                found["daemon"] = pid
            elif "code-server" in cmd:
                found["code_server"] = pid
        return found

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL to whatever is left of it (code servers, run workers)."""
        if self.proc is None:
            return
        self.http.close()
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def chromium() -> Iterator:
    """Headless Chromium driven by Playwright (a fresh temporary profile per launch); FileNotFoundError
    without Debian's Chromium."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM}: Debian's chromium package is not installed (`.ci/run` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1600, 1000)) -> Iterator:
    """One page of a headless Chromium launched for it."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        yield context.new_page()
