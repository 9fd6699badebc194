"""bench_aggregate.py's last phase: incremental folds while ingestion runs at full speed.

Ingestion (BENCH_AGGREGATE_INGEST):
- `http` (default): through the real endpoints, gunicorn with 2 sync workers
  (common.serve) and CLIENTS client processes posting as fast as they are answered;
- `services`: CLIENTS processes calling the ingest services (`predictions_ingest`,
  `feedback_ingest`, the COPY path the endpoints use) with the same bodies, no HTTP:
  a faster source, to load the folds harder than this machine's HTTP can.
Each client sends batches of 500 tagged predictions of the experiment, each for a new subject
(so each is also an exposure), then 100 click feedback events on a fifth of them, for
BENCH_AGGREGATE_INGEST_SECONDS (default 30).

Meanwhile this process runs `services.aggregations_run(names=PROJECTIONS)` back to back, as
a worker with a short beat interval would, and records when each window committed. Only the
`experiments` projection, the subject of bench_aggregate.py, which folds no other one before
this phase either. Figures: events posted and log events (with exposures) per minute, events
folded per minute while the clients ran (target ≥ 1,000,000/min), the lag when they stopped,
how long the folds took to drain it, and the longest window.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from common import Environment, api_key, serve, unique_id_prefix

MODE = os.environ.get("BENCH_AGGREGATE_INGEST", "http")
SECONDS = float(os.environ.get("BENCH_AGGREGATE_INGEST_SECONDS", "30"))
CLIENTS = 2
BATCH = 500
CLICK_EVERY = 5
TARGET_EVENTS_PER_MINUTE = 1_000_000
PROJECTIONS = ("experiments",)

VARIANTS = (("control", "1"), ("treatment", "2"), ("other", "3"))

Send = Callable[[str, bytes], None]


def _bodies(prefix: str, first: int, key: str, at: str) -> tuple[bytes, bytes]:
    """Predictions first..first+BATCH-1 (new subjects) and clicks on every CLICK_EVERY-th."""
    predictions, clicks = [], []
    for number in range(first, first + BATCH):
        variant, version = VARIANTS[min((number * 7919) % 10 // 4, 2)]
        predictions.append(
            {
                "id": f"{prefix}0{number:011x}",
                "model": "churn",
                "model_version": version,
                "subject": f"{prefix}{number}",
                "experiment": key,
                "variant": variant,
                "attributes": {"country": ("DE", "FR", "US", "PL", "GB")[number % 5]},
                "output": {"score": (number % 100) / 100},
                "occurred_at": at,
            }
        )
        if number % CLICK_EVERY == 0:
            clicks.append(
                {
                    "id": f"{prefix}f{number:011x}",
                    "prediction_id": f"{prefix}0{number:011x}",
                    "metric": "click",
                    "value": 1 if number % 23 < 5 else 0,
                    "occurred_at": at,
                }
            )
    return orjson.dumps({"events": predictions}), orjson.dumps({"events": clicks})


def _http_sender(base_url: str, key: str) -> Send:
    parts = urlsplit(base_url)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def send(path: str, body: bytes) -> None:
        # gunicorn's sync workers close every connection after answering.
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        if response.status != 201:
            raise RuntimeError(f"POST {path} answered {response.status}: {payload[:300]!r}")

    return send


def _service_sender() -> Send:
    from apps.ingest import services

    def send(path: str, body: bytes) -> None:
        if path.endswith("/predictions"):
            services.predictions_ingest(body=body, actor="bench")
        else:
            services.feedback_ingest(body=body, actor="bench")

    return send


def _client(base_url: str, key: str, experiment: str, stop_at: float, results: Any) -> None:
    """One client process: batches until stop_at; puts (predictions, feedback, end, error)."""
    send = _http_sender(base_url, key) if MODE == "http" else _service_sender()
    prefix = unique_id_prefix()
    predictions = feedback = 0
    error = ""
    try:
        while time.time() < stop_at:
            at = datetime.now(UTC).isoformat()
            bodies = _bodies(prefix, predictions, experiment, at)
            send("/api/v1/predictions", bodies[0])
            predictions += BATCH
            send("/api/v1/feedback", bodies[1])
            feedback += BATCH // CLICK_EVERY
    except Exception as failure:  # noqa: BLE001 - reported to the parent, which fails the run
        error = repr(failure)
    results.put((predictions, feedback, time.time(), error))


@dataclass
class Figures:
    seconds: float
    predictions: int
    feedback: int
    # projection -> events in the windows committed while the clients ran; in all
    folded_during: dict[str, int]
    folded: dict[str, int]
    lag_at_end: dict[str, int]
    drain_seconds: float
    # projection -> (windows, the longest one's seconds)
    windows: dict[str, tuple[int, float]]
    error: str

    @property
    def log_events(self) -> int:
        # Every prediction is a new subject's: one exposure each.
        return 2 * self.predictions + self.feedback

    def show(self) -> None:
        minutes = self.seconds / 60
        say(
            f"  ingestion ({MODE}, {CLIENTS} clients): {self.predictions:,} predictions and "
            f"{self.feedback:,} feedback in {self.seconds:.1f} s = "
            f"{(self.predictions + self.feedback) / minutes:,.0f} events/min posted, "
            f"{self.log_events / minutes:,.0f} log events/min (with exposures)"
        )
        for name, folded in self.folded_during.items():
            rate = folded / minutes
            say(
                f"  {name:<12} folded {rate:>10,.0f} events/min while ingesting "
                f"(target {TARGET_EVENTS_PER_MINUTE:,}: "
                f"{'met' if rate >= TARGET_EVENTS_PER_MINUTE else 'MISSED'}); "
                f"{self.lag_at_end[name]:,} behind when ingestion stopped"
            )
        whole = (self.seconds + self.drain_seconds) / 60
        rates = ", ".join(f"{name} {folded / whole:,.0f}" for name, folded in self.folded.items())
        say(
            f"  drained in {self.drain_seconds:.1f} s after ingestion stopped: events/min "
            f"folded from the start of ingestion to the end of the drain: {rates}"
        )
        for name, (count, longest) in sorted(self.windows.items()):
            say(f"  {name:<12} {count} windows, the longest {longest:.1f} s")


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the benchmark's output


def measure(environment: Environment, experiment_key: str) -> Figures:
    """Ingest for SECONDS while folding; then fold until nothing is left."""
    from django.db import connections

    key = api_key(environment, scopes="ingest")
    with serve(environment) if MODE == "http" else nullcontext("") as base_url:
        # The clients are forked: none may share this process's database connection.
        connections.close_all()
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        started = time.time()
        clients = [
            context.Process(
                target=_client, args=(base_url, key, experiment_key, started + SECONDS, results)
            )
            for _ in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        windows = Windows()
        while any(client.is_alive() for client in clients):
            windows.run()
        outcomes = [results.get(timeout=60) for _ in clients]
        for client in clients:
            client.join(timeout=30)
    ended = max(outcome[2] for outcome in outcomes)
    # Drain: runs until one finds nothing (at least one run after the clients stopped).
    while windows.run():
        pass
    return Figures(
        seconds=ended - started,
        predictions=sum(outcome[0] for outcome in outcomes),
        feedback=sum(outcome[1] for outcome in outcomes),
        folded_during=windows.folded(until=ended),
        folded=windows.folded(until=windows.last_at),
        lag_at_end={
            name: windows.folded(until=windows.last_at)[name] - windows.folded(until=ended)[name]
            for name in windows.names
        },
        drain_seconds=max(windows.last_at - ended, 0.0),
        windows=windows.longest(),
        error="; ".join(outcome[3] for outcome in outcomes if outcome[3]),
    )


class Windows:
    """Every window the folds commit, with when: a run catches up until it finds nothing
    new, which under steady ingestion may take the whole ingestion."""

    def __init__(self) -> None:
        # (when it committed, projection, events, seconds since the previous commit or the
        # start of the run) per folded window
        self.folds: list[tuple[float, str, int, float]] = []
        self.names: set[str] = set()
        self.last_at = 0.0
        # this run's events so far, per projection
        self._this_run: dict[str, int] = {}
        self._mark = 0.0

    def run(self) -> int:
        """One aggregations_run; the events it folded."""
        from apps.analytics import services

        self._this_run = {}
        self._mark = time.time()
        report = services.aggregations_run(names=PROJECTIONS, progress=self._progress)
        self.last_at = time.time()
        self.names |= set(report["projections"])
        return sum(int(entry["folded"]) for entry in report["projections"].values())

    def _progress(self, name: str, total: int) -> None:
        # `total` counts this projection's events since the run began.
        now = time.time()
        self.folds.append((now, name, total - self._this_run.get(name, 0), now - self._mark))
        self._this_run[name] = total
        self._mark = now

    def folded(self, *, until: float) -> dict[str, int]:
        found = dict.fromkeys(sorted(self.names), 0)
        for at, name, events, _ in self.folds:
            if at <= until:
                found[name] = found.get(name, 0) + events
        return found

    def longest(self) -> dict[str, tuple[int, float]]:
        """Per projection: how many windows, and the longest one's seconds."""
        found: dict[str, tuple[int, float]] = {}
        for _, name, _, seconds in self.folds:
            count, longest = found.get(name, (0, 0.0))
            found[name] = (count + 1, max(longest, seconds))
        return found
