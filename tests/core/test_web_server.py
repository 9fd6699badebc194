"""Kaizen under a real gunicorn, configured as `make run` configures it (config.settings,
static files collected into STATIC_ROOT and served by whitenoise), against the test database.

Raw sockets send what a test client cannot: a body with chunked transfer encoding.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from apps.accounts import services as account_services
from apps.ingest.models import Prediction
from tests.core.test_api_docs import ASSETS, references, sidecar_file
from tests.ingest.factories import prediction, register_churn

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 60
# What the test process was configured with must not reach the server.
NOT_INHERITED = {"DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR", "KAIZEN_TEST_REDIS_WORKER"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return (
        f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"
    )


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:  # noqa: S310 - localhost
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError:
        return 0, {}, b""


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """gunicorn (one sync worker) on a free port; yields (base URL, port)."""
    folder = tmp_path_factory.mktemp("web")
    port = _free_port()
    with django_db_blocker.unblock():
        database_url = _database_url()
    environment = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        KAIZEN_ENV="development",
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        STATIC_ROOT=str(folder / "static"),
        KAIZEN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        KAIZEN_CONFIG_WATCH="false",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(  # noqa: S603 - this interpreter, our manage.py
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=environment,
        check=True,
        timeout=120,
    )
    log = folder / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, the project's gunicorn config
            [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while _get(base + "/healthz")[0] != 200:
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"gunicorn did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield base, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def _raw_request(port: int, head: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head_part, _, content = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    if headers.get("transfer-encoding") == "chunked":
        content = _dechunk(content)
    return int(status_line.split()[1]), headers, content


def _dechunk(data: bytes) -> bytes:
    whole = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return whole
        whole, data = whole + data[:size], data[size + 2 :]


def _post_prediction(port: int, key: str, body: bytes, *, chunked: bool) -> Any:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    sent = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if chunked else body
    head = (
        "POST /api/v1/predictions HTTP/1.1\n"
        f"Host: 127.0.0.1:{port}\n"
        f"Authorization: Bearer {key}\n"
        "Content-Type: application/json\n"
        f"{framing}\n"
        "Connection: close\n"
    )
    return _raw_request(port, head, sent)


@pytest.mark.django_db(transaction=True)
def test_post__chunked_body_under_gunicorn__411_length_required_nothing_stored(server):
    # Given: a registered model, an ingest key and a valid prediction
    _, port = server
    register_churn()
    _, key = account_services.api_key_create(application="tests", name="web", scopes=["ingest"])
    body = json.dumps(prediction()).encode()
    # When: it is sent with chunked transfer encoding
    status, headers, content = _post_prediction(port, key, body, chunked=True)
    # Then: refused with API.md's body, never read as an empty body (a 400, or a 201)
    assert status == 411
    assert headers["content-type"] == "application/json"
    assert json.loads(content) == {
        "error": {
            "code": "length_required",
            "message": "Send the request body with a Content-Length header; chunked transfer "
            "encoding is not accepted.",
            "details": [],
        }
    }
    assert Prediction.objects.count() == 0
    # And the same request with Content-Length is stored
    status, _, content = _post_prediction(port, key, body, chunked=False)
    assert (status, json.loads(content)) == (201, {"accepted": 1, "duplicates": 0})
    assert Prediction.objects.count() == 1


def test_docs_page__under_gunicorn_after_collectstatic__every_asset_served(server):
    # Given
    base, _ = server
    # When
    status, _, page = _get(base + "/api/docs/")
    found = references(page.decode())
    # Then: the page names only this server's files, and whitenoise serves each whole
    assert status == 200
    assert sorted(found) == sorted(ASSETS)
    for url in found:
        asset_status, headers, content = _get(base + url)
        assert (url, asset_status) == (url, 200)
        assert headers["Content-Type"].split(";")[0] == ASSETS[url]
        assert content == sidecar_file(url)
