"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, a free loopback port.

The server runs under the same watchdog as the Kafka brokers. initdb and postgres refuse to run
as root, so when the tests run as root both run as the `postgres` system user (Debian package)
and the temp dir is handed to that user. Authentication is `trust` on loopback only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.harness.processes import SupervisedProcess, free_port

SUPERUSER = "streamctl"
START_TIMEOUT_S = 60.0


class PostgresHarnessError(RuntimeError):
    """PostgreSQL could not be set up (the message carries the log tail)."""


def postgres_bin_dir() -> Path:
    """The directory holding initdb and postgres (PATH first, then Debian's versioned dirs)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise PostgresHarnessError(
            "initdb not found; install PostgreSQL (`bash scripts/system-deps.sh`)"
        )
    return Path(candidates[-1]).parent


def _run_as(user: str | None) -> Callable[[], None] | None:
    """A preexec_fn dropping root to `user` (None when no switch is needed)."""
    if user is None:
        return None
    entry = pwd.getpwnam(user)

    def drop() -> None:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop


class PostgresServer:
    """One PostgreSQL cluster; `url`/`dsn` point at its default database."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.workdir = Path(tempfile.mkdtemp(prefix="streamctl-pg-"))
        self.data_dir = self.workdir / "data"
        self.socket_dir = self.workdir / "socket"
        self.log_path = self.workdir / "postgres.log"
        self.port = free_port()
        self.database = "streamctl"
        self.process: SupervisedProcess | None = None
        self.startup_seconds: float | None = None

    @property
    def dsn(self) -> str:
        """libpq connection URL of the default database."""
        return self.dsn_for(self.database)

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of the default database."""
        return self.url_for(self.database)

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL (one per test keeps them apart)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def start(self) -> PostgresServer:
        """initdb, start the server, wait until it answers a query."""
        began = time.monotonic()
        self.socket_dir.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.workdir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            preexec_fn=_run_as(self.user),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if initdb.returncode != 0:
            raise PostgresHarnessError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        command = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.socket_dir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        # SIGINT is PostgreSQL's "fast shutdown": roll back open sessions and exit.
        self.process = SupervisedProcess(
            command,
            log_path=self.log_path,
            cwd=self.workdir,
            stop_signal="INT",
            grace=15.0,
            user=self.user,
        )
        self._wait_ready()
        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the server and remove its files."""
        if self.process is not None:
            self.process.stop()
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is None or not self.process.running:
                raise PostgresHarnessError(f"postgres exited:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.dsn_for("postgres"), connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                last_error = error
                time.sleep(0.2)
        raise PostgresHarnessError(
            f"postgres not ready after {START_TIMEOUT_S:.0f}s ({last_error!r}):\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        """The end of the server log, for failure reports."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
        except OSError:
            return "(no log)"
