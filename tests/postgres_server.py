"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks: Debian's server binaries
(``/usr/lib/postgresql/<version>/bin``, installed by ``.ci/run``), a fresh cluster in a temporary
directory, password authentication over TCP, one empty database.

``with PostgresServer() as pg:`` gives ``pg.env``: the ``DAGSTER_PG_*`` settings that
``deploy/dagster.yaml`` reads. PostgreSQL refuses to run as root, so under root (CI) the server runs as
the ``postgres`` account the Debian package creates (``nobody`` where there is none).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER, DATABASE = "dagster", "dagster"
# A server that only lives for one test session: durability buys nothing and costs seconds.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200"}


def server_bindir() -> Path:
    """The newest installed server's bin directory; a clear error naming the package when there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    on_path = shutil.which("initdb")
    if found:
        return Path(found[-1]).parent
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
                       "or on PATH: install Debian's `postgresql` package (`.ci/run` does)")


def _account() -> pwd.struct_passwd | None:
    """Who runs the server: ourselves, or under root an unprivileged account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` account exists to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster started in a temporary directory, stopped and deleted on exit."""

    def __init__(self):
        self.bindir = server_bindir()
        self.account = _account()
        self.password = secrets.token_hex(12)
        self.port = 0
        self.directory: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """The settings ``deploy/dagster.yaml`` reads from the environment."""
        return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": USER,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": DATABASE}

    @property
    def log(self) -> str:
        path = self.directory / "server.log" if self.directory else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def _run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        ids = {}
        if self.account is not None:
            ids = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                              cwd=self.directory, env={**os.environ, "LC_ALL": "C", **(env or {})}, **ids)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr or proc.stdout}\n{self.log}")
        return proc

    def _write(self, name: str, text: str, mode: str = "w") -> Path:
        path = self.directory / name
        with open(path, mode) as f:
            f.write(text)
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)
        return path

    def __enter__(self) -> PostgresServer:
        self.directory = Path(tempfile.mkdtemp(prefix="vila-pg-"))
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        if self.account is not None:
            os.chown(self.directory, self.account.pw_uid, self.account.pw_gid)
        pwfile = self._write("pwfile", self.password + "\n")
        self._run("initdb", "-D", "data", "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync")
        self.port = _free_port()
        settings = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                    "unix_socket_directories": f"'{self.directory}'", **FAST_SETTINGS}
        self._write("data/postgresql.conf", "".join(f"\n{k} = {v}" for k, v in settings.items()) + "\n", mode="a")
        self._run("pg_ctl", "-D", "data", "-l", "server.log", "-w", "-t", "60", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE,
                  env={"PGPASSWORD": self.password})

    def __exit__(self, *exc) -> None:
        if self.directory is None:
            return
        if (self.directory / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
