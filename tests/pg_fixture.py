"""A throwaway PostgreSQL server for the tests: a cluster in a temp folder, on loopback, stopped at the end.

Debian's `postgresql` package provides the binaries (`.ci/run` installs it); the server refuses to run as root, so
when the tests run as root the cluster belongs to the `postgres` user and is started through `runuser`. Where the
server cannot start, the tests that need it are skipped with the reason, never passed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    env = os.environ.get("CLEANER_PG_BIN")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl start in a temp folder; `url(db)` names a database on it."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        if self.bin is None or not (self.bin / "initdb").exists():
            raise RuntimeError("PostgreSQL's initdb was not found (install Debian's 'postgresql' package)")
        self.as_user: list[str] = []
        self.user = pwd.getpwuid(os.getuid()).pw_name
        if os.geteuid() == 0:  # the server refuses to run as root: the postgres user runs it
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]
            self.user = "postgres"
        self.folder = Path(tempfile.mkdtemp(prefix="cleaner-pg-"))
        self.data = self.folder / "data"
        self.sockets = self.folder / "sock"
        self.sockets.mkdir()
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self.port = _free_port()
        self.log = self.folder / "server.log"
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}"
            )

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            self.user,
            "-E",
            "UTF8",
            "--no-instructions",
        )
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "120",
            "start",
            timeout=180,
        )
        self.started = True

    def stop(self) -> None:
        if self.started:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres", password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"postgresql+psycopg://{self.user}{secret}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name made here, not input: no parameter for DDL
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname=database, autocommit=True
        ) as conn:
            conn.execute(statement)


@pytest.fixture(scope="session")
def postgres_cluster():
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install 'psycopg[binary]')")
    try:
        cluster = PostgresCluster()
    except RuntimeError as exc:
        pytest.skip(f"PostgreSQL cannot start here: {exc}")
    try:
        cluster.start()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        log = cluster.log.read_text(errors="replace")[-600:] if cluster.log.exists() else ""
        cluster.stop()
        pytest.skip(f"PostgreSQL cannot start here: {exc} {log}".strip())
    yield cluster
    cluster.stop()
