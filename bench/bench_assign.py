"""Assignment benchmark (issue 4, "Speed"): POST /api/v1/assignments next to a minimal view.

Starts gunicorn (2 sync workers) on a fresh database with settings that add two anchor views
to Kaizen's routes (bench/anchor_urls.py): an empty view, and the minimal view the issue
measures against (parse the body, hash, one INSERT … ON CONFLICT DO NOTHING, one commit).
Registers model `churn` with versions 2 and 3, creates and starts a 50/50 experiment through
the API, then loads the server closed loop, each phase bounded in time:

1. the empty view (the ceiling of this machine, server and client together);
2. the minimal view, new subjects (one durable commit each);
3. assignments of new subjects (exposure written; target ≥ 2,000/s, p99 < 15 ms);
4. the minimal view, repeat subjects (the insert conflicts: no write);
5. assignments of repeat subjects (stored exposure found; target ≥ 4,000/s).

The load comes from wrk (bench/wrk.py: a Lua script, unique subjects for "new", a pool
of REPEAT_POOL per wrk thread for "repeat", the Bearer key) when it is on PATH, as in the
issue, for every phase, so the anchors and the endpoint are loaded alike; without wrk, from
Python client processes (bench/common.py), which use more CPU per request than the server
and so understate the rates: the ratios to the anchors measured in the same run are then
the figures to compare. Last, in one process against the same database, the time per call
of the API key lookup and the rate limit (apps/accounts: a per-process key cache, one Redis
round trip) and of the assignment service, to show what the hot path spends where.

Environment: DATABASE_URL / REDIS_URL name the servers (else the embedded ones);
BENCH_SECONDS sets each phase's length (default 8 s); with wrk, BENCH_WRK_THREADS (2),
BENCH_CONNECTIONS (10, wrk's default: measured here, the rate is flat from 6 to 32
connections while the latency grows with them, as 2 sync workers answer one request each at
a time and the rest queue; the minimal view's p99 at 10 is near the issue's 5-8 ms) and
BENCH_WRK_CPUS (e.g. "1": pin wrk with
taskset; no clear difference measured on 2 cores, so off by default); without wrk,
BENCH_CLIENTS the client processes (default 4). BENCH_DATABASE names the scratch database
(default kaizen_bench_assign).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wrk  # noqa: E402 - the sibling module, found through the path above
from common import (  # noqa: E402 - the sibling module, found through the path above
    PYTHON,
    ROOT,
    Environment,
    Load,
    api_key,
    drop_database,
    fresh_database,
    machine_load,
    report,
    request_json,
    run_load,
    serve,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
# wrk's threads and open connections (closed loop), and the cores it is pinned to ("" = none).
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "10"))
WRK_CPUS = os.environ.get("BENCH_WRK_CPUS", "")
EXPERIMENT = "bench-v3-vs-v2"
# Repeat phases reuse the first REPEAT_POOL subjects each client sent in the "new" phases.
REPEAT_POOL = 500
SETTINGS = "bench.anchor_settings"

TARGET_NEW = 2000.0
TARGET_NEW_P99_MS = 15.0
TARGET_REPEAT = 4000.0


class Assignment:
    """Bodies of POST /api/v1/assignments: new subjects, or the pool of repeat ones."""

    def __init__(self, prefix: str, repeat: bool) -> None:
        self.prefix = prefix
        self.repeat = repeat

    def __call__(self, index: int, number: int) -> tuple[bytes, int]:
        count = number % REPEAT_POOL if self.repeat else number
        body = {
            "experiment": EXPERIMENT,
            "subject": f"{self.prefix}-{index}-{count}",
            "attributes": {"country": ("DE", "FR", "US", "PL")[number % 4], "plan": "pro"},
        }
        return orjson.dumps(body), 1


def set_up(environment: Environment, base_url: str, key: str) -> None:
    with psycopg.connect(environment.database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_anchor (subject text PRIMARY KEY,"
            " variant text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        )
    model = {
        "name": "churn",
        "task": "binary_classification",
        "positive_label": "churn",
        "segment_attributes": ["country"],
    }
    request_json(base_url, "POST", "/api/v1/models", key, orjson.dumps(model))
    for version in ("2", "3"):
        body = orjson.dumps({"version": version})
        request_json(base_url, "POST", "/api/v1/models/churn/versions", key, body)
    experiment = {
        "key": EXPERIMENT,
        "model": "churn",
        "variants": [
            {"key": "control", "model_version": "2", "weight": 0.5},
            {"key": "treatment", "model_version": "3", "weight": 0.5},
        ],
        "control": "control",
    }
    request_json(base_url, "POST", "/api/v1/experiments", key, orjson.dumps(experiment))
    request_json(base_url, "POST", f"/api/v1/experiments/{EXPERIMENT}/start", key)


def phase(
    base_url: str,
    key: str,
    label: str,
    path: str,
    prefix: str,
    repeat: bool,
    seconds: float = SECONDS,
) -> dict[str, float]:
    if wrk.available():
        result = wrk.run_wrk(
            base_url,
            path,
            key=key,
            prefix=prefix,
            experiment=EXPERIMENT,
            pool=REPEAT_POOL if repeat else 0,
            seconds=seconds,
            threads=WRK_THREADS,
            connections=CONNECTIONS,
            cpus=WRK_CPUS or None,
        )
        return wrk.report(label, result)
    load = Load(
        path=path,
        key=key,
        make_body=Assignment(prefix, repeat),
        seconds=seconds,
        processes=CLIENTS,
    )
    return report(label, run_load(base_url, load))


def http_phases(environment: Environment, key: str) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {}
    with serve(environment, workers=2) as base_url:
        set_up(environment, base_url, key)
        # Warm both workers (imports, connections, the configuration snapshot).
        phase(base_url, key, "(warm-up)", "/api/v1/assignments", "warm", False, 2.0)
        figures["empty"] = phase(base_url, key, "empty Django view", "/bench/empty", "e", False)
        figures["anchor_new"] = phase(
            base_url, key, "minimal view, new subjects", "/bench/minimal", "anchor", False
        )
        figures["assign_new"] = phase(
            base_url, key, "assignments, new subjects", "/api/v1/assignments", "subject", False
        )
        figures["anchor_repeat"] = phase(
            base_url, key, "minimal view, repeat subjects", "/bench/minimal", "anchor", True
        )
        figures["assign_repeat"] = phase(
            base_url, key, "assignments, repeat subjects", "/api/v1/assignments", "subject", True
        )
    return figures


_IN_PROCESS = """
import os, time, django
django.setup()
from types import SimpleNamespace
from apps.accounts import services as accounts
from apps.accounts.authentication import ApiKeyAuthentication
from apps.accounts.throttling import ApiKeyRateThrottle
from apps.experiments import services
from django.test import RequestFactory

raw, experiment, calls = os.environ["BENCH_KEY"], os.environ["BENCH_EXPERIMENT"], 2000
request = RequestFactory().post("/", HTTP_AUTHORIZATION=f"Bearer {raw}")
principal, _ = ApiKeyAuthentication().authenticate(request)
as_drf = SimpleNamespace(user=principal, META=request.META)

def per_call(function):
    started = time.perf_counter()
    for number in range(calls):
        function(number)
    return (time.perf_counter() - started) / calls * 1e6

key = per_call(lambda n: accounts.api_key_authenticate(raw))
limit = per_call(lambda n: ApiKeyRateThrottle().allow_request(as_drf, None))
repeat = per_call(lambda n: services.assignment_create(
    experiment=experiment, subject=f"subject-0-{n % 500}", attributes={}))
new = per_call(lambda n: services.assignment_create(
    experiment=experiment, subject=f"in-process-{n}", attributes={"country": "DE"}))
print(f"{key:.0f} {limit:.0f} {repeat:.0f} {new:.0f}")
"""


def in_process_costs(environment: Environment, key: str) -> tuple[float, ...]:
    """Microseconds per call, in one process: key lookup, rate limit, repeat and new
    assignment (the service alone)."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [PYTHON, "-c", _IN_PROCESS],
        env=environment.variables(
            DJANGO_SETTINGS_MODULE=SETTINGS, BENCH_KEY=key, BENCH_EXPERIMENT=EXPERIMENT
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return tuple(float(value) for value in done.stdout.split()[-4:])


def main() -> int:
    print(f"before: {machine_load()}")
    if wrk.available():
        pinned = f", pinned to cores {WRK_CPUS}" if WRK_CPUS else ""
        print(f"load: wrk, {WRK_THREADS} threads, {CONNECTIONS} connections{pinned}")
    else:
        print(
            f"load: wrk is not on PATH; {CLIENTS} Python client processes instead (they use"
            " more CPU per request than the server: rates are understated, ratios still hold)"
        )
    environment = fresh_database(os.environ.get("BENCH_DATABASE", "kaizen_bench_assign"))
    try:
        key = api_key(environment)
        figures = http_phases(_with_settings(environment), key)
        key_us, limit_us, repeat_us, new_us = in_process_costs(environment, key)
    finally:
        drop_database(environment)
    print(f"after:  {machine_load()}")
    new, repeat = figures["assign_new"], figures["assign_repeat"]
    anchor_new, anchor_repeat = figures["anchor_new"], figures["anchor_repeat"]
    print(
        f"new subjects:    {new['requests_per_second'] / anchor_new['requests_per_second']:.2f}"
        f" × the minimal view (p99 {new['p99_ms']:.1f} ms vs {anchor_new['p99_ms']:.1f} ms)"
    )
    print(
        f"repeat subjects: "
        f"{repeat['requests_per_second'] / anchor_repeat['requests_per_second']:.2f}"
        f" × the minimal view (p99 {repeat['p99_ms']:.1f} ms vs {anchor_repeat['p99_ms']:.1f} ms)"
    )
    print(
        f"in one process, per call: API key lookup {key_us:.0f} µs, rate limit {limit_us:.0f} µs,"
        f" assignment service for a repeat subject {repeat_us:.0f} µs, for a new subject"
        f" {new_us:.0f} µs"
    )
    checks = [
        (f"new subjects ≥ {TARGET_NEW:,.0f}/s", new["requests_per_second"] >= TARGET_NEW),
        (f"new subjects p99 < {TARGET_NEW_P99_MS:.0f} ms", new["p99_ms"] < TARGET_NEW_P99_MS),
        (
            f"repeat subjects ≥ {TARGET_REPEAT:,.0f}/s",
            repeat["requests_per_second"] >= TARGET_REPEAT,
        ),
    ]
    for text, met in checks:
        client = "wrk" if wrk.available() else "Python clients; the issue's are wrk's"
        print(f"target {'met   ' if met else 'MISSED'}: {text} ({client})")
    return 0


def _with_settings(environment: Environment) -> Environment:
    """The same database and Redis, served with the anchor views' settings."""

    class WithAnchors(Environment):
        def variables(self, **extra: str) -> dict[str, str]:
            return super().variables(**{"DJANGO_SETTINGS_MODULE": SETTINGS, **extra})

    return WithAnchors(environment.database_url, environment.redis_url)


if __name__ == "__main__":
    sys.exit(main())
