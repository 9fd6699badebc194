"""What any HTTP benchmark of Kaizen needs: a fresh database, gunicorn, load, percentiles.

- `fresh_database()` creates an empty database on the PostgreSQL of DATABASE_URL (else the
  embedded one) and migrates it; `api_key()` makes a key with `manage.py create_api_key`.
- `serve()` runs gunicorn (config/gunicorn.conf.py, 2 sync workers unless told otherwise)
  against it on a free loopback port and stops it afterwards.
- `run_load()` loads a server from separate processes, bounded in time and in requests:
  closed loop (each process sends its next request when the last one is answered) or open
  loop at a fixed rate (latency counted from when the request was due, so a server that
  falls behind is charged for the wait).
- `percentile()` and `report()` print the figures.

Bodies are built per request by a picklable `BodyMaker`, so a run needs no pre-built corpus
and every event id is new. Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"

# --- database -------------------------------------------------------------------------------


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        return url
    sys.path.insert(0, str(ROOT))
    from config import embedded

    return embedded.postgres_url()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if url:
        return url
    sys.path.insert(0, str(ROOT))
    from config import embedded

    return embedded.redis_url()


@dataclass(frozen=True)
class Environment:
    """Where a benchmark's server and clients point: one fresh database, one Redis."""

    database_url: str
    redis_url: str

    def variables(self, **extra: str) -> dict[str, str]:
        variables = dict(os.environ)
        variables.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            KAIZEN_ENV="development",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            LOG_LEVEL="WARNING",
            # The benchmark measures ingestion, not the per-key rate limit.
            KAIZEN_RATE_LIMIT="100000000/minute",
            PYTHONPATH=str(ROOT),
        )
        variables.update(extra)
        return variables


def fresh_database(name: str = "kaizen_bench") -> Environment:
    """Drop and recreate database `name` on the configured server, then migrate it."""
    server = _server_url()
    with psycopg.connect(_with_database(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    environment = Environment(database_url=_with_database(server, name), redis_url=_redis_url())
    manage(environment, "migrate", "--no-input", "-v", "0")
    return environment


def drop_database(environment: Environment) -> None:
    name = urlsplit(environment.database_url).path.lstrip("/")
    server = _with_database(environment.database_url, "postgres")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(environment: Environment, *arguments: str) -> str:
    """Run `manage.py` against the environment; its standard output."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [PYTHON, str(ROOT / "manage.py"), *arguments],
        env=environment.variables(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(arguments)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def api_key(environment: Environment, scopes: str = "ingest,read,manage") -> str:
    output = manage(environment, "create_api_key", "--name", "bench", "--scopes", scopes)
    return output.strip().splitlines()[-1]


# --- server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(environment: Environment, *, workers: int = 2) -> Iterator[str]:
    """gunicorn (the project's config) on a free loopback port; yields its base URL."""
    port = free_port()
    variables = environment.variables(
        KAIZEN_BIND=f"{LOOPBACK}:{port}",
        WEB_CONCURRENCY=str(workers),
        GUNICORN_CMD_ARGS="--log-level warning",
        # whitenoise warns that the static folder is missing: the benchmark serves no files.
        PYTHONWARNINGS="ignore::UserWarning",
    )
    variables.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(  # noqa: S603 - gunicorn of this virtualenv
        [str(Path(PYTHON).parent / "gunicorn"), "--config", "config/gunicorn.conf.py"],
        env=variables,
        cwd=ROOT,
        start_new_session=True,
    )
    base_url = f"http://{LOOPBACK}:{port}"
    try:
        _wait_ready(base_url, process)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    host, port = urlsplit(base_url).hostname or LOOPBACK, urlsplit(base_url).port or 80
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz in time")


def request_json(base_url: str, method: str, path: str, key: str, body: bytes = b"") -> Any:
    """One request (set-up calls); the decoded JSON answer, raising on a 4xx/5xx."""
    import orjson

    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port or 80, timeout=30)
    conn.request(method, path, body=body, headers=_headers(key))
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    if response.status >= 400:
        raise RuntimeError(f"{method} {path} answered {response.status}: {payload[:500]!r}")
    return orjson.loads(payload) if payload else None


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


# --- load -----------------------------------------------------------------------------------

# (worker index, request number) -> (body, number of events in it)
BodyMaker = Callable[[int, int], tuple[bytes, int]]


@dataclass(frozen=True)
class Load:
    """A bounded load: `processes` clients, each at most `max_requests`, for `seconds`.

    `rate` (requests/s over all processes) makes it open loop; None is closed loop.
    """

    path: str
    key: str
    make_body: BodyMaker
    seconds: float
    processes: int = 2
    rate: float | None = None
    max_requests: int = 100_000


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    events: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    finished: float = 0.0
    # Build time of the bodies, spent by the client between requests (not server time).
    build_seconds: float = 0.0

    def merge(self, other: Outcome) -> None:
        self.latencies += other.latencies
        self.events += other.events
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.errors += other.errors
        self.build_seconds += other.build_seconds
        self.started = min(self.started or other.started, other.started)
        self.finished = max(self.finished, other.finished)

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def requests(self) -> int:
        return len(self.latencies)


def _client(base_url: str, load: Load, index: int, start_at: float, results: Any) -> None:
    outcome = Outcome()
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port or 80, timeout=30)
    headers = _headers(load.key)
    interval = load.processes / load.rate if load.rate else 0.0
    # Open loop: the processes' schedules are interleaved evenly.
    due = start_at + (index * interval / load.processes if interval else 0.0)
    while time.time() < start_at:
        time.sleep(0.001)
    outcome.started = time.time()
    stop_at = outcome.started + load.seconds
    for number in range(load.max_requests):
        built = time.perf_counter()
        body, events = load.make_body(index, number)
        outcome.build_seconds += time.perf_counter() - built
        if interval:
            now = time.time()
            if due >= stop_at:
                break
            if due > now:
                time.sleep(due - now)
            sent_at = due
            due += interval
        else:
            sent_at = time.time()
            if sent_at >= stop_at:
                break
        try:
            conn.request("POST", load.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except OSError:
            outcome.errors += 1
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port or 80)
            continue
        outcome.latencies.append(time.time() - sent_at)
        outcome.statuses[response.status] = outcome.statuses.get(response.status, 0) + 1
        if 200 <= response.status < 300:
            outcome.events += events
    outcome.finished = time.time()
    conn.close()
    results.put(outcome)


def run_load(base_url: str, load: Load) -> Outcome:
    """Run `load` against `base_url` from `load.processes` processes; the merged outcome."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.5
    clients = [
        context.Process(target=_client, args=(base_url, load, index, start_at, results))
        for index in range(load.processes)
    ]
    for client in clients:
        client.start()
    total = Outcome()
    for _ in clients:
        total.merge(results.get(timeout=load.seconds + 120))
    for client in clients:
        client.join(timeout=30)
    return total


def unique_id_prefix() -> str:
    """The first 24 characters of UUIDs (8-4-4-4-) unique to this run; add 12 hex digits."""
    raw = secrets.token_hex(10)
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-8{raw[17:20]}-"


# --- figures --------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (fraction in 0-1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def report(label: str, outcome: Outcome) -> dict[str, float]:
    """Print one line of figures for `outcome`; returns them."""
    failed = outcome.errors + sum(
        count for status, count in outcome.statuses.items() if not 200 <= status < 300
    )
    figures = {
        "requests": float(outcome.requests),
        "failed": float(failed),
        "events_per_second": outcome.events / outcome.seconds,
        "requests_per_second": outcome.requests / outcome.seconds,
        "p50_ms": percentile(outcome.latencies, 0.50) * 1000,
        "p99_ms": percentile(outcome.latencies, 0.99) * 1000,
    }
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(outcome.statuses.items()))
    print(
        f"{label:<40} {figures['events_per_second']:>10,.0f} events/s "
        f"{figures['requests_per_second']:>8,.1f} req/s  p50 {figures['p50_ms']:6.1f} ms  "
        f"p99 {figures['p99_ms']:6.1f} ms  ({outcome.requests} requests; {statuses}"
        f"{f'; {outcome.errors} connection errors' if outcome.errors else ''})"
    )
    return figures


def machine_load() -> str:
    """The 1-minute load average and core count, to read the figures against."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
