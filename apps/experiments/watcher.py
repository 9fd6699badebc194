"""The configuration number pushed to each process, so that assignment reads no row for it.

Every change to an experiment raises the ConfigVersion number in its own transaction, and a
trigger on that row (migration 0006) sends the new number with `pg_notify` on CHANNEL when
the transaction commits; PostgreSQL delivers notifications in commit order. Each process
that assigns runs one daemon thread holding its own connection with `LISTEN CHANNEL`: it
reads the number once after LISTEN (so no commit falls between the two), then keeps the
number of the last notification, and reads the row again every RESYNC_SECONDS, which also
proves the connection alive.

`trusted_version()` is that number, or None when it cannot be trusted, and the caller then
reads the row as before (one primary-key read in the same round trip as its statement):
- KAIZEN_CONFIG_WATCH is off (the test settings: their transactions never commit, so their
  changes are never notified);
- the thread is not connected (starting, or the database went away: it reconnects with a
  backoff);
- this process itself changed the configuration and its own notification has not come back
  yet (`distrust()`), so a process sees its own change on its next request, whatever the
  listener's delay.

A change committed in another process reaches this one when PostgreSQL delivers the
notification: on a local connection, well under a millisecond after the commit returns.
The thread is started on first use in each process, and again in a forked child.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

CHANNEL = "kaizen_experiments_config"
APPLICATION_NAME = "kaizen-config-watch"
RESYNC_SECONDS = 5.0
WAKE_SECONDS = 0.5
# A local change whose notification never comes (its transaction rolled back) stops being
# waited for after this long.
PENDING_SECONDS = 30.0
RECONNECT_MAX_SECONDS = 10.0


class ConfigWatcher:
    """The LISTEN thread of one process and the last configuration number it saw."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._version: int | None = None
        # The number this process itself set, until the listener sees it (with a deadline).
        self._pending: tuple[int, float] | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kaizen-config-watch", daemon=True)
        self._thread.start()

    def version(self) -> int | None:
        pending = self._pending
        if pending is not None:
            if time.monotonic() < pending[1]:
                return None
            self._pending = None
        return self._version

    def distrust(self, number: int) -> None:
        self._pending = (number, time.monotonic() + PENDING_SECONDS)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WAKE_SECONDS + 5)

    def _seen(self, number: int) -> None:
        self._version = number
        pending = self._pending
        if pending is not None and pending[0] == number:
            self._pending = None

    def _run(self) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            try:
                with psycopg.connect(**_connection_params()) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._seen(_read_number(conn))
                    self._connected.set()
                    backoff = 0.25
                    resync_at = time.monotonic() + RESYNC_SECONDS
                    while not self._stop.is_set():
                        # Wakes at least every WAKE_SECONDS, so that stop() is prompt.
                        for notify in conn.notifies(timeout=WAKE_SECONDS):
                            self._seen(int(notify.payload or 0))
                        if time.monotonic() >= resync_at:
                            self._seen(_read_number(conn))
                            resync_at = time.monotonic() + RESYNC_SECONDS
            except Exception as error:  # noqa: BLE001 - any failure: distrust, reconnect
                self._version = None
                self._connected.clear()
                logger.warning("config_watch.disconnected", extra={"error": repr(error)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)
        self._version = None
        self._connected.clear()


def _connection_params() -> dict[str, Any]:
    """Django's parameters of the default database, for a connection of the thread's own."""
    params = dict(connections["default"].get_connection_params())
    params["autocommit"] = True
    # Named in pg_stat_activity, for operators (and tests) to find.
    params["application_name"] = APPLICATION_NAME
    return params


def _read_number(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT version FROM experiments_configversion WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


_watcher: ConfigWatcher | None = None
_lock = threading.Lock()


def watcher() -> ConfigWatcher | None:
    """This process's watcher, started on first use; None when KAIZEN_CONFIG_WATCH is off."""
    global _watcher
    if not settings.KAIZEN_CONFIG_WATCH:
        return None
    current = _watcher
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _watcher is None or _watcher.pid != os.getpid():
            # In a forked child the parent's thread does not exist: start this process's own.
            _watcher = ConfigWatcher()
        return _watcher


def trusted_version() -> int | None:
    """The configuration number as last notified, or None when the row must be read."""
    current = watcher()
    return None if current is None else current.version()


def distrust(number: int) -> None:
    """This process set the number `number`: read the row until the listener has seen it."""
    current = _watcher
    if current is not None and current.pid == os.getpid():
        current.distrust(number)


def watcher_stop() -> None:
    """Stop this process's thread and close its connection (tests; shutdown)."""
    global _watcher
    with _lock:
        current, _watcher = _watcher, None
    if current is not None and current.pid == os.getpid():
        current.stop()
