"""Ingestion touches Redis only through the rate limiter, which fails open: with the cache's
Redis stopped mid-test, posting keeps working and stores every event."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from asgiref.local import Local
from django.conf import settings
from django.core.cache import caches, close_caches
from django.test import override_settings

from apps.accounts import throttling
from apps.ingest.models import Feedback, Prediction
from tests.ingest.factories import feedback, post, prediction

START_SECONDS = 30


def _spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], redis.Redis]]:
    """A redis-server of this test's own on a spare port, the cache of every request."""
    binary = shutil.which("redis-server") or pytest.fail("no redis-server on PATH")
    port = _spare_port()
    process = subprocess.Popen(  # noqa: S603 - the machine's redis-server, fixed arguments
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the test's redis-server did not start")
            time.sleep(0.05)
    cache = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{port}/0"}}
    try:
        with override_settings(CACHES=cache):
            close_caches()
            caches._connections = Local()  # type: ignore[attr-defined]  # Django's own reset
            yield process, client
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=START_SECONDS)
        close_caches()
        caches._connections = Local()  # type: ignore[attr-defined]  # Django's own reset


@pytest.mark.django_db
def test_post__redis_stopped_mid_test__ingestion_keeps_working(
    ingester, churn, own_redis, monkeypatch
):
    # Given the rate limiter counts this key's requests in the test's own Redis
    monkeypatch.setattr(throttling, "_skip_until", 0.0)
    process, client = own_redis
    assert post(ingester, "/api/v1/predictions", prediction()).status_code == 201
    assert any(b"throttle" in key for key in client.keys("*"))
    # When Redis stops
    process.terminate()
    process.wait(timeout=START_SECONDS)
    # Then predictions and feedback are still stored, none refused
    statuses = [
        post(ingester, "/api/v1/predictions", {"events": [prediction(), prediction()]}).status_code,
        post(ingester, "/api/v1/predictions", prediction()).status_code,
        post(ingester, "/api/v1/feedback", feedback()).status_code,
        post(ingester, "/api/v1/feedback", {"events": [feedback(), feedback()]}).status_code,
    ]
    assert statuses == [201, 201, 201, 201]
    assert Prediction.objects.count() == 4
    assert Feedback.objects.count() == 3
