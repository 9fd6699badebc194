"""`make run`: Kaizen in the foreground on this machine, from nothing to a working API.

Starts the embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are set (then it
uses those, as production does), migrates, collects the static files, refreshes a demo
superuser and a demo API key with every scope (and prints both), then runs the web server
(gunicorn) and a Celery worker with beat embedded, the same commands docker-compose.yml runs
as separate services. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops the children, waits for them,
stops the embedded servers this run started, and exits 0.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from config import embedded
from config.celery import QUEUE_NAMES

BASE_DIR = Path(__file__).resolve().parent.parent

QUEUES = QUEUE_NAMES
# The three process kinds of a deployment; docker-compose.yml runs exactly these commands
# (tests/core/test_compose.py holds them together). `make run` runs beat inside the worker.
WEB_COMMAND = ("gunicorn", "--config", "config/gunicorn.conf.py")
WORKER_COMMAND = ("celery", "--app", "config", "worker", "--queues", ",".join(QUEUES))
BEAT_COMMAND = ("celery", "--app", "config", "beat")

DEMO_USERNAME = "demo"
DEMO_APPLICATION = "make-run"
DEFAULT_BIND = "127.0.0.1:8000"
READY_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 30


class Stopped(Exception):  # noqa: N818 - a request to stop, not an error
    """A stop signal arrived."""


class LaunchFailed(Exception):
    """A step failed; `hint` tells the user what to do next."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


@dataclass
class Run:
    """What this run started, so that stopping undoes exactly that."""

    home: Path
    embedded_postgres: bool = False
    embedded_redis: bool = False
    started_postgres: bool = False
    started_redis: bool = False
    children: list[Child] = field(default_factory=list)
    metrics_dir: Path | None = None


def say(text: str = "", *, end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


@contextmanager
def step(label: str, hint: str, *, own_line: bool = False) -> Iterator[None]:
    """One progress line: `label ... ok`, or FAILED and a LaunchFailed carrying the hint.

    `own_line` ends the label's line at once, for steps during which children log.
    """
    say(f"  {label} ... ", end="\n" if own_line else "")
    try:
        yield
    except (Stopped, LaunchFailed):
        say("interrupted")
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a step is reported with its hint
        say("FAILED")
        raise LaunchFailed(f"{label}: {type(error).__name__}: {error}", hint) from error
    say(f"  {label}: ok" if own_line else "ok")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _parse_bind(bind: str) -> tuple[str, int]:
    host, separator, port = bind.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise LaunchFailed(
            f"KAIZEN_BIND is {bind!r}",
            "Set KAIZEN_BIND to host:port, e.g. KAIZEN_BIND=127.0.0.1:8000.",
        )
    return host, int(port)


def _local_url(host: str, port: int) -> str:
    """A URL that reaches the bound address from this machine."""
    if host in {"0.0.0.0", ""}:  # noqa: S104 - translating a wildcard bind, not binding
        host = "127.0.0.1"
    elif host in {"[::]", "::"}:
        host = "[::1]"
    return f"http://{host}:{port}"


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise LaunchFailed(
                f"{host}:{port} is not free ({error.strerror})",
                f"Stop what listens there (another make run?) or pick another address: "
                f"KAIZEN_BIND=127.0.0.1:{port + 1} make run",
            ) from error


def _database(run: Run) -> None:
    if os.environ.get("DATABASE_URL"):
        say("  PostgreSQL: DATABASE_URL (not starting the embedded server)")
        return
    pgdata = run.home / "pgdata"
    already = embedded.postgres_running()
    first = not (pgdata / "PG_VERSION").exists()
    label = f"PostgreSQL: embedded, data in {_relative(pgdata)}"
    if first:
        label += " (first run: initdb)"
    with step(
        label,
        f"See {_relative(pgdata / 'log')}. To start afresh, stop make run and delete "
        f"{_relative(pgdata)} (this deletes its data), or set DATABASE_URL to a server.",
    ):
        run.embedded_postgres = True
        run.started_postgres = not already
        os.environ["DATABASE_URL"] = embedded.postgres_url()


def _broker(run: Run) -> None:
    if os.environ.get("REDIS_URL"):
        say("  Redis: REDIS_URL (not starting the embedded server)")
        return
    already = embedded.redis_running()
    with step(
        f"Redis: embedded, log in {_relative(run.home / 'redis.log')}",
        f"See {_relative(run.home / 'redis.log')}, or set REDIS_URL to a server.",
    ):
        run.embedded_redis = True
        run.started_redis = not already
        os.environ["REDIS_URL"] = embedded.redis_url()


def _refuse_production() -> LaunchFailed:
    return LaunchFailed(
        "KAIZEN_ENV=production",
        "make run is the development launcher (it creates a demo superuser). In "
        "production run the web, worker and beat commands of docker-compose.yml.",
    )


def _prepare_django() -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    with step(
        "Settings and apps",
        "An ImproperlyConfigured error names the environment variable to set (README.md, "
        "Configuration); any other is in the code: .venv/bin/python manage.py check shows it.",
    ):
        django.setup()
    # The children log; the launcher's own INFO lines would only break its progress lines.
    logging.disable(logging.INFO)
    if settings.PRODUCTION:
        raise _refuse_production()
    with step(
        "Migrations",
        "Read the error above; if the embedded database is a throwaway, delete "
        ".kaizen/pgdata and run make run again.",
    ):
        call_command("migrate", interactive=False, verbosity=0)
    with step(
        f"Static files into {_relative(Path(settings.STATIC_ROOT))}",
        "Check that STATIC_ROOT is writable.",
    ):
        call_command("collectstatic", interactive=False, verbosity=0)


def _demo_account() -> tuple[str, str]:
    """Create or refresh the demo superuser and a fresh all-scope key; (password, key)."""
    from axes.utils import reset as axes_reset
    from django.contrib.auth.models import User
    from django.db import transaction

    from apps.accounts import services as account_services
    from apps.accounts.models import ApiKey, Scope

    password = os.environ.get("KAIZEN_DEMO_PASSWORD") or secrets.token_urlsafe(12)
    with transaction.atomic():
        user, _ = User.objects.get_or_create(username=DEMO_USERNAME)
        user.is_active = user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        # The password printed below works at once: an admin lockout of an earlier run
        # (wrong passwords typed then) is lifted with the password it was about.
        axes_reset(username=DEMO_USERNAME)
        # Only the key printed by the latest make run works: an old terminal's key is dead.
        previous = ApiKey.objects.filter(
            application__name=DEMO_APPLICATION, revoked_at__isnull=True
        )
        for key in previous:
            account_services.api_key_revoke(key=key)
        _, raw_key = account_services.api_key_create(
            application=DEMO_APPLICATION,
            name="demo",
            scopes=[scope.value for scope in Scope],
            actor=f"user:{DEMO_USERNAME}",
        )
    return password, raw_key


def _fresh_metrics_dir(home: Path) -> Path:
    """A new PROMETHEUS_MULTIPROC_DIR for this run; folders of dead runs are removed."""
    for old in home.glob("prometheus-*"):
        pid = old.name.removeprefix("prometheus-")
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = home / f"prometheus-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start(run: Run, name: str, command: tuple[str, ...], env: dict[str, str]) -> None:
    # Own session: Ctrl-C reaches only the launcher, which stops children in order.
    process = subprocess.Popen(  # noqa: S603 - our own fixed commands, run by this venv's python
        [sys.executable, "-m", *command],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    run.children.append(Child(name, process))


def _start_services(run: Run, bind: str) -> None:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("KAIZEN_BIND", bind)
    web_env = dict(env)
    run.metrics_dir = _fresh_metrics_dir(run.home)
    web_env["PROMETHEUS_MULTIPROC_DIR"] = str(run.metrics_dir)
    say(f"  Web: gunicorn on {bind}, {env.get('WEB_CONCURRENCY', '2')} workers")
    _start(run, "web", WEB_COMMAND, web_env)
    schedule = run.home / "celerybeat-schedule"
    say(f"  Worker: celery worker with beat, queues {', '.join(QUEUES)}")
    _start(
        run,
        "worker",
        (*WORKER_COMMAND, "--beat", "--schedule", str(schedule), "--loglevel", "WARNING"),
        env,
    )


def _exited_child(run: Run) -> Child | None:
    return next((child for child in run.children if child.process.poll() is not None), None)


def _child_failed(child: Child) -> LaunchFailed:
    return LaunchFailed(
        f"{child.name} exited with code {child.process.returncode}",
        "Read its log lines above; fix what they name and run make run again.",
    )


def _wait_ready(run: Run, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with step(
        f"Waiting for {url}/readyz",
        "Read the web server's log lines above.",
        own_line=True,
    ):
        while True:
            child = _exited_child(run)
            if child is not None:
                raise _child_failed(child)
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - our own http URL
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {READY_TIMEOUT_SECONDS} seconds")
            time.sleep(0.25)


def _banner(url: str, password: str, raw_key: str) -> None:
    say()
    say("Kaizen is running. Press Ctrl-C to stop it.")
    say(f"  API          {url}/api/v1/")
    say(f"  API docs     {url}/api/docs/")
    say(f"  Admin        {url}/admin/")
    say(f"  Metrics      {url}/metrics")
    say(f"  Admin user   {DEMO_USERNAME}")
    say(f"  Password     {password}")
    say(f"  API key      {raw_key}")
    say("               (scopes ingest, manage, read; keys of earlier runs are revoked)")
    say(f'  Try          curl -H "Authorization: Bearer {raw_key}" {url}/api/v1/events')
    say()


def _serve(run: Run) -> None:
    bind = os.environ.get("KAIZEN_BIND") or DEFAULT_BIND
    host, port = _parse_bind(bind)
    if os.environ.get("KAIZEN_ENV") == "production":
        raise _refuse_production()
    # Before anything starts: a taken port is the likeliest failure and the quickest to fix.
    _check_port_free(host, port)
    say(f"Kaizen: make run (files under {_relative(run.home)})")
    _database(run)
    _broker(run)
    _prepare_django()
    with step(
        f"Demo superuser {DEMO_USERNAME!r} and API key",
        "Read the error above; the database may be unreachable.",
    ):
        password, raw_key = _demo_account()
    from django.db import connections

    connections.close_all()
    _start_services(run, bind)
    url = _local_url(host, port)
    _wait_ready(run, url)
    _banner(url, password, raw_key)
    while True:
        child = _exited_child(run)
        if child is not None:
            raise _child_failed(child)
        time.sleep(0.5)


def _stop_children(run: Run) -> None:
    for child in run.children:
        if child.process.poll() is None:
            # gunicorn: graceful stop; celery: warm shutdown (finishes the tasks it holds).
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for child in run.children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"  {child.name} did not stop in {STOP_TIMEOUT_SECONDS}s; killing it")
            # The leader is not reaped yet, so its process group id is still ours.
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        say(f"  {child.name} stopped")


def _shutdown(run: Run) -> None:
    _stop_children(run)
    if run.metrics_dir is not None:
        shutil.rmtree(run.metrics_dir, ignore_errors=True)
    # Servers that ran before this run (another process uses them) are left running.
    for name, used, started, stop in (
        ("Redis", run.embedded_redis, run.started_redis, embedded.stop_redis),
        ("PostgreSQL", run.embedded_postgres, run.started_postgres, embedded.stop_postgres),
    ):
        if started and stop():
            say(f"  embedded {name} stopped")
        elif used and not started:
            say(
                f"  embedded {name} left running, as it was before make run; "
                "stop it with: .venv/bin/python -m config.embedded stop"
            )


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Later signals are ignored: stopping is already bounded by STOP_TIMEOUT_SECONDS.
    for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(each, _on_signal)
    run = Run(home=embedded.home())
    code = 0
    try:
        _serve(run)
    except Stopped as stop:
        say(f"\nStopping ({stop}) ...")
    except LaunchFailed as failure:
        say(f"\nmake run failed: {failure}")
        say(f"What to do: {failure.hint}")
        code = 1
    for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(each, signal.SIG_IGN)
    try:
        _shutdown(run)
    except Exception as error:  # noqa: BLE001 - report, and still exit with a status
        say(f"Stopping failed: {type(error).__name__}: {error}")
        say("What to do: .venv/bin/python -m config.embedded stop")
        return 1
    if code == 0:
        say("Kaizen stopped.")
    elif run.children or run.started_postgres or run.started_redis:
        say("Stopped what this run had started.")
    return code


if __name__ == "__main__":
    sys.exit(main())
