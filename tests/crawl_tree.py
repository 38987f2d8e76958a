"""Run the crawler CLI as a subprocess and watch it from outside: the summed RSS of its whole process
tree (sampled from /proc, not the crawler's own report), its wall time, and what it leaves behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the CLI runs as a session leader: every process it starts,
    and every process those start, stays in its session unless it leaves on purpose)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(entry)) is not None and fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry))
    return members


def tree_rss(sid: int) -> int:
    """Summed resident set of every process in session ``sid``, in bytes."""
    total = 0
    for pid in session_members(sid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return total


@dataclass
class CliRun:
    rc: int | None
    stdout: str
    stderr: str
    wall_s: float
    peak_rss: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, tree RSS)
    killed_for_memory: bool = False
    leftovers: list[int] = field(default_factory=list)  # processes of the session alive after exit


def run_crawl_cli(args: list[str], *, timeout: float, hard_limit: int, env: dict | None = None,
                  interval: float = 0.05, kill_after: float | None = None, cwd: str | None = None) -> CliRun:
    """``python -m vila_assets.crawl_cli *args`` in a new session. The tree's RSS is sampled every
    ``interval`` s; past ``hard_limit`` bytes the session is killed (this machine is shared: a
    regression must fail the test, not take the box down). ``kill_after``: SIGKILL the CLI itself
    (not its children) after that many seconds, to see what outlives it. ``cwd``: where the CLI runs
    (its ``vila_assets`` is imported from there first)."""
    cmd = [sys.executable, "-m", "vila_assets.crawl_cli", *args]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    samples: list[tuple[float, int]] = []
    killed = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            rss = tree_rss(proc.pid)
            samples.append((time.monotonic() - started, rss))
            if rss > hard_limit and not killed.is_set():
                killed.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            if kill_after is not None and time.monotonic() - started > kill_after and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            done.wait(interval)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[test] killed after {timeout} s"
    wall = time.monotonic() - started
    done.set()
    watcher.join()
    leftovers = _wait_for_empty_session(proc.pid, 10.0)
    for pid in leftovers:  # never leave them running on a shared machine, whatever the assertions say
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return CliRun(proc.returncode, out, err, wall, max((s for _, s in samples), default=0), samples,
                  killed.is_set(), leftovers)


def _wait_for_empty_session(sid: int, seconds: float) -> list[int]:
    """The session's processes still alive after ``seconds`` (exiting children get that long)."""
    deadline = time.monotonic() + seconds
    while (members := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return members
