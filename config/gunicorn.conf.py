"""Gunicorn settings of the web process, the same for `make run` and docker-compose.yml.

KAIZEN_BIND (default 127.0.0.1:8000) is where it listens, WEB_CONCURRENCY how many worker
processes (default 2). GUNICORN_CMD_ARGS adds any other gunicorn option
(e.g. `--access-logfile -`).

/metrics runs prometheus_client in multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set:
each worker writes its samples to files there. The folder is emptied when the master starts
(samples of a previous run would otherwise be added in), and a dead worker's live gauges
are dropped when it exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

wsgi_app = "config.wsgi:application"
bind = [os.environ.get("KAIZEN_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
# A request past this is a bug (API.md bounds every body; the longest request,
# POST /api/v1/aggregations/run, answers within KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS);
# the worker is replaced.
timeout = int(float(os.environ.get("KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS", "120"))) + 30
# On SIGTERM, workers finish the requests they hold for up to this long.
graceful_timeout = 10
# Workers heartbeat through a file; tmpfs avoids stalls on slow container file systems.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 - tmpfs on Linux
# The app is imported in each worker after the fork, so each registers its own metrics files.
preload_app = False
# Nothing here uses gunicorn's control socket, whose one default path per user would make a
# second gunicorn on the machine (another checkout, a test) clash with the first.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR before any worker writes to it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a worker that exited (prometheus_client multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # untyped upstream
