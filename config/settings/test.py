"""Test settings: the PostgreSQL and Redis at DATABASE_URL/REDIS_URL, else the machine's local
servers when they answer on 127.0.0.1, else the embedded ones."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit, urlunsplit


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


os.environ.setdefault("KAIZEN_ENV", "test")
if not os.environ.get("DATABASE_URL") and _answers(5432):
    os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/kaizen"
if not os.environ.get("REDIS_URL") and _answers(6379):
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/15"


def _own_redis_database(url: str, worker: str) -> str:
    """The Redis URL with a database of this pytest-xdist worker's own (gw0 keeps the given
    one, gw1 the one below it, …): the broker's queues are shared by name, and a test that
    counts the messages on one must not see those a test on another worker sent."""
    parts = urlsplit(url)
    given = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(given - int(worker[2:])) % 16}"))


_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if (
    os.environ.get("REDIS_URL", "").startswith("redis://")
    and _worker.startswith("gw")
    # Once per worker: a process a test starts inherits the URL already made its own.
    and os.environ.get("KAIZEN_TEST_REDIS_WORKER") != _worker
):
    os.environ["REDIS_URL"] = _own_redis_database(os.environ["REDIS_URL"], _worker)
    os.environ["KAIZEN_TEST_REDIS_WORKER"] = _worker

from config.settings.base import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# No limit on failed authentications: the suite sends many from 127.0.0.1, and a window's
# count in Redis outlives a test (tests/accounts/test_invalid_key_throttle.py sets its own).
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {  # noqa: F405
    "api_key": "100000/minute",
    "invalid_key": None,
}
# Serve static files from the apps' folders, as collectstatic has not run for tests.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Each test looks its keys up afresh (tests revoke and expire keys behind the services' back);
# tests/accounts/test_key_cache.py covers the cache itself.
KAIZEN_API_KEY_CACHE_SECONDS = 0.0
# A test's transaction never commits, so its configuration changes are never notified: read
# the number per request (tests of the watcher turn it on for themselves).
KAIZEN_CONFIG_WATCH = False
