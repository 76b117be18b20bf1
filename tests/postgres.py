"""A throwaway PostgreSQL server for tests and benchmarks: `initdb` into a temporary folder, `pg_ctl start`
on a Unix socket only (no TCP), and one database per test copied from a migrated template.

PostgreSQL refuses to run as root, so when this process is root the server runs as the `postgres`
user (Debian's `postgresql` package creates it) and owns the folder. The binaries are the ones on PATH,
else the newest of Debian's `/usr/lib/postgresql/*/bin`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.ports import free_port

SERVER_USER = "postgres"
TEMPLATE = "mistudio_template"
SETTINGS = {
    "listen_addresses": "''",
    "max_connections": "300",
    "fsync": "off",  # a throwaway cluster: durability buys nothing here
    "full_page_writes": "off",
}


def server_binaries() -> Path | None:
    """The folder of `pg_ctl` and `initdb`, or None when PostgreSQL is not installed."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return installed[-1].parent if installed else None


def missing_reason() -> str | None:
    """What is missing to start a server here, or None when nothing is."""
    if server_binaries() is None:
        return "PostgreSQL (`apt-get install postgresql`, or initdb and pg_ctl on PATH)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver (`pip install 'mistudio-jupyter[postgres]'`)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"a `{SERVER_USER}` user to run PostgreSQL as (it refuses root)"
    return None


class PostgresCluster:
    """One PostgreSQL server in a temporary folder, reachable at `url(database)`."""

    def __init__(self) -> None:
        bindir = server_binaries()
        if bindir is None:
            raise RuntimeError(missing_reason())
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="mistudio-pg-"))
        self.port = free_port()
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def url(self, database: str) -> str:
        """The catalog URL of a database of this server (over its Unix socket)."""
        return f"postgresql+psycopg://{SERVER_USER}@/{database}?host={self.root}&port={self.port}"

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8"]
        self._run([*initdb, "--no-sync", "--no-instructions"])
        options = " ".join(f"-c {name}={value}" for name, value in SETTINGS.items())
        options += f" -k {self.root} -p {self.port}"
        pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log)]
        self._run([*pg_ctl, "-o", options, "-w", "start"])
        self._admin(f'CREATE DATABASE "{TEMPLATE}"')
        from mistudio_jupyter.core.catalog import Catalog

        Catalog(self.url(TEMPLATE)).close()  # migrated once; each test's database is a copy
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def database(self, *, migrated: bool = True, name: str | None = None) -> Iterator[str]:
        """A new database for the duration of the block (copied from the migrated template, or empty;
        named `name`, else a random test name); dropped at the end, with any connection still open to it."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE if migrated else "template0"}"')
        try:
            yield self.url(name)
        finally:
            self._admin(f'DROP DATABASE "{name}" WITH (FORCE)')

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.root), port=self.port, user=SERVER_USER, dbname="postgres") as connection:
            connection.autocommit = True
            connection.execute(statement)

    def _run(self, command: list[str]) -> None:
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr + log)
