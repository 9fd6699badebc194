"""Assignment benchmark (issue 4, "Speed"): POST /api/v1/assignments next to a minimal view.

Starts gunicorn (2 sync workers) on a fresh database with settings that add two anchor views
to Kaizen's routes (bench/anchor_urls.py): an empty view, and the minimal view the issue
measures against (parse the body, hash, one INSERT … ON CONFLICT DO NOTHING, one commit).
Registers model `churn` with versions 2 and 3, creates and starts a 50/50 experiment through
the API, then loads the server closed loop, each phase bounded in time:

1. the empty view (the ceiling of this machine, server and client together);
2. the minimal view, new subjects (one durable commit each), into a three-column table and
   into Kaizen's exposure table (the row Kaizen stores: bench/anchor_urls.py), and the
   latter once more with its INSERT prepared as the endpoint runs its statement (no target:
   it tells the way of executing apart from the work);
3. assignments of new subjects (exposure written; target ≥ 2,000/s, p99 < 15 ms);
4. the minimal view, repeat subjects (the insert finds the row: ON CONFLICT DO NOTHING);
5. assignments of repeat subjects (stored exposure found; target ≥ 4,000/s).

The phases run in BENCH_ROUNDS rounds (default 6), interleaved, and the figures are
medians over the rounds; each ratio is the median of the rounds' ratios of the endpoint to
its anchor measured next to it, so a drift of a shared machine's speed during the run
weighs on both. The issue's targets are absolute figures from a machine whose empty view
serves ~7,500/s and minimal view ~2,000-2,500/s: the verdicts are printed both as written
and scaled by this machine's anchors (new subjects: by either minimal view against 2,250/s;
repeat subjects: by the empty view against 7,500/s).

The load comes from wrk (bench/wrk.py: a Lua script, unique subjects for "new", a pool
of REPEAT_POOL per wrk thread for "repeat", the Bearer key) when it is on PATH, as in the
issue, for every phase, so the anchors and the endpoint are loaded alike; without wrk, from
Python client processes (bench/common.py), which use more CPU per request than the server
and so understate the rates: the ratios to the anchors measured in the same run are then
the figures to compare. Last, in one process against the same database, the time per call
of the API key lookup, the rate limit (a lease held in memory) and the assignment service
for a new subject and for a stored exposure (first met: one database call; met before: from
memory; with the configuration watcher off: one database call), to show what the hot path
spends where; and the exposure-row anchor's INSERT run both ways, through Django's cursor as
the anchor runs it and prepared through apps/core/db.py as the endpoint runs its own, to show
how much of the endpoint's standing comes from the way it executes rather than the work.

Environment: DATABASE_URL / REDIS_URL name the servers (else the embedded ones);
BENCH_SECONDS sets each phase's length per round (default 3 s: on a shared machine the rate
of one 4-s phase was seen to swing by ±30 % from one round to the next, so many short
rounds beat a few long ones); with wrk, BENCH_WRK_THREADS (2),
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
import statistics
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

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
# wrk's threads and open connections (closed loop), and the cores it is pinned to ("" = none).
WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "10"))
WRK_CPUS = os.environ.get("BENCH_WRK_CPUS", "")
EXPERIMENT = "bench-v3-vs-v2"
# Repeat phases reuse the first REPEAT_POOL subjects each client sent in the "new" phases.
REPEAT_POOL = 500
SETTINGS = "bench.anchor_settings"

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
ASSIGN_PATH = "/api/v1/assignments"

TARGET_NEW = 2000.0
TARGET_NEW_P99_MS = 15.0
TARGET_REPEAT = 4000.0
# The issue's machine: the empty view at ~7,500/s, the minimal view at 2,000-2,500/s.
ISSUE_EMPTY = 7500.0
ISSUE_ANCHOR_NEW = 2250.0
ISSUE_ANCHOR_P99_MS = 8.0


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


# (figure, label, path, subject prefix, repeat): one round, in this order.
def _round(number: int) -> list[tuple[str, str, str, str, bool]]:
    return [
        ("empty", "empty Django view", "/bench/empty", "e", False),
        ("anchor_new", "minimal view, new subjects", "/bench/minimal", f"anchor{number}", False),
        (
            "anchor_exposure",
            "minimal view, new exposure rows",
            "/bench/minimal-exposure",
            f"anchorx{number}",
            False,
        ),
        (
            "anchor_prepared",
            "minimal view, exposure rows, prepared",
            "/bench/minimal-exposure-prepared",
            f"anchorp{number}",
            False,
        ),
        ("assign_new", "assignments, new subjects", ASSIGN_PATH, f"subject{number}", False),
        # Repeat phases reuse the subjects of round 0's "new" phases.
        ("anchor_repeat", "minimal view, repeat subjects", "/bench/minimal", "anchor0", True),
        ("assign_repeat", "assignments, repeat subjects", ASSIGN_PATH, "subject0", True),
    ]


def http_phases(environment: Environment, key: str) -> dict[str, list[dict[str, float]]]:
    """Each phase's figures, per round: ROUNDS rounds of every phase, interleaved, so that a
    drift of the machine's speed during the run weighs on the endpoint and its anchor alike."""
    figures: dict[str, list[dict[str, float]]] = {}
    with serve(environment, workers=2) as base_url:
        set_up(environment, base_url, key)
        # Warm both workers (imports, connections, the configuration snapshot).
        phase(base_url, key, "(warm-up)", ASSIGN_PATH, "warm", False, 2.0)
        for number in range(ROUNDS):
            print(f"round {number + 1} of {ROUNDS}")
            for name, label, path, prefix, repeat in _round(number):
                figures.setdefault(name, []).append(
                    phase(base_url, key, label, path, prefix, repeat)
                )
    return figures


def _median(values: list[float]) -> float:
    return statistics.median(values)


def summarise(figures: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Median rate and p99 of each phase over the rounds."""
    return {
        name: {
            "requests_per_second": _median([r["requests_per_second"] for r in rounds]),
            "p99_ms": _median([r["p99_ms"] for r in rounds]),
        }
        for name, rounds in figures.items()
    }


def _per_round(figures: dict[str, list[dict[str, float]]], name: str, anchor: str) -> list[float]:
    """Each round's rate of `name` over its anchor's, measured next to it."""
    pairs = zip(figures[name], figures[anchor], strict=True)
    return [a["requests_per_second"] / b["requests_per_second"] for a, b in pairs]


def round_ratios(figures: dict[str, list[dict[str, float]]], name: str, anchor: str) -> float:
    """The median over rounds of the endpoint's rate over its anchor's in the same round."""
    return _median(_per_round(figures, name, anchor))


def spread(figures: dict[str, list[dict[str, float]]], name: str, anchor: str) -> str:
    """How far the rounds' ratios scatter: lowest, middle half, highest."""
    ratios = sorted(_per_round(figures, name, anchor))
    if len(ratios) < 4:
        return f"rounds {' '.join(f'{r:.2f}' for r in ratios)}"
    first, _, third = statistics.quantiles(ratios, n=4)
    return f"rounds {ratios[0]:.2f} to {ratios[-1]:.2f}, middle half {first:.2f} to {third:.2f}"


_IN_PROCESS = """
import os, time, django
django.setup()
from django.test import override_settings
from apps.accounts import services as accounts, throttling
from apps.experiments import selectors, services, watcher

raw, experiment, calls = os.environ["BENCH_KEY"], os.environ["BENCH_EXPERIMENT"], 2000

def per_call(function):
    started = time.perf_counter()
    for number in range(calls):
        function(number)
    return (time.perf_counter() - started) / calls * 1e6

def assign(subject, attributes):
    services.assignment_create(experiment=experiment, subject=subject, attributes=attributes)

key = per_call(lambda n: accounts.api_key_authenticate(raw))
limit = per_call(lambda n: throttling.rate_limit_wait("bench-in-process"))
watcher.watcher().wait_connected(10)
new = per_call(lambda n: assign(f"in-process-{n}", {"country": "DE"}))
# Subjects of the HTTP run's first "new" phase: met once here (the database), then memory.
stored = [f"subject0-{thread}-{n}" for thread in (1, 2) for n in range(calls // 2)]
from_table = per_call(lambda n: assign(stored[n], {}))
from_memory = per_call(lambda n: assign(stored[n], {}))
with override_settings(KAIZEN_CONFIG_WATCH=False):
    unwatched = per_call(lambda n: assign(stored[n], {}))
# The exposure-row anchor's INSERT as its view runs it (Django's cursor, bound client-side),
# then through fetchone_prepared as the endpoint runs its own: what the way of executing is
# worth on its own, apart from the work.
from django.db import connection
from apps.core.db import fetchone_prepared
from bench.anchor_urls import EXPOSURE_INSERT
experiment_id = selectors.config_snapshot().experiments[experiment].id
def row(prefix, n):
    return [experiment_id, f"{prefix}-{n}", "control", "2", '{"country": "DE"}']
def django_cursor(n):
    with connection.cursor() as cursor:
        cursor.execute(EXPOSURE_INSERT, row("cursor", n))
django_insert = per_call(django_cursor)
prepared_insert = per_call(lambda n: fetchone_prepared(EXPOSURE_INSERT, row("prepared", n)))
print(
    f"{key:.1f} {limit:.1f} {new:.0f} {from_table:.0f} {from_memory:.1f} {unwatched:.0f}"
    f" {django_insert:.0f} {prepared_insert:.0f}"
)
"""
COST_LABELS = (
    "API key lookup",
    "rate limit",
    "assignment service for a new subject",
    "for a stored exposure met the first time",
    "for a stored exposure met before (memory)",
    "for a stored exposure without the watcher",
    "the exposure-row anchor's INSERT through Django's cursor",
    "the same INSERT prepared (apps/core/db.py)",
)


def in_process_costs(environment: Environment, key: str) -> tuple[float, ...]:
    """Microseconds per call in one process, for each of COST_LABELS (services alone)."""
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
    return tuple(float(value) for value in done.stdout.split()[-len(COST_LABELS) :])


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
    print(f"{ROUNDS} rounds of every phase, {SECONDS:.0f} s each, interleaved")
    environment = fresh_database(os.environ.get("BENCH_DATABASE", "kaizen_bench_assign"))
    try:
        key = api_key(environment)
        rounds = http_phases(_with_settings(environment), key)
        costs = in_process_costs(environment, key)
    finally:
        drop_database(environment)
    print(f"after:  {machine_load()}")
    figures = summarise(rounds)
    print(f"medians over {ROUNDS} rounds:")
    for name, label, *_ in _round(0):
        print(
            f"  {label:<34} {figures[name]['requests_per_second']:>8,.0f} req/s"
            f"  p99 {figures[name]['p99_ms']:6.2f} ms"
        )
    new, repeat = figures["assign_new"], figures["assign_repeat"]
    anchor_new = figures["anchor_new"]
    new_ratio = round_ratios(rounds, "assign_new", "anchor_new")
    new_to_row = round_ratios(rounds, "assign_new", "anchor_exposure")
    new_to_prepared = round_ratios(rounds, "assign_new", "anchor_prepared")
    row_ratio = round_ratios(rounds, "anchor_exposure", "anchor_new")
    repeat_ratio = round_ratios(rounds, "assign_repeat", "anchor_repeat")
    repeat_to_empty = round_ratios(rounds, "assign_repeat", "empty")
    print(
        f"new subjects:    {new_ratio:.2f} x the minimal view's new subjects"
        f" (p99 {new['p99_ms']:.1f} ms vs {anchor_new['p99_ms']:.1f} ms;"
        f" {spread(rounds, 'assign_new', 'anchor_new')})"
    )
    print(
        f"                 {new_to_row:.2f} x the minimal view inserting Kaizen's exposure row"
        f" ({spread(rounds, 'assign_new', 'anchor_exposure')}; that view runs at"
        f" {row_ratio:.2f} x the three-column one: the row's own cost)"
    )
    print(
        f"                 {new_to_prepared:.2f} x that view with its INSERT prepared as the"
        f" endpoint runs its own ({spread(rounds, 'assign_new', 'anchor_prepared')};"
        " no target: the way of executing apart from the work)"
    )
    print(
        f"repeat subjects: {repeat_ratio:.2f} x the minimal view's repeat subjects,"
        f" {repeat_to_empty:.2f} x the empty view"
    )
    print(
        "in one process, per call: "
        + ", ".join(
            f"{label} {value:.0f} µs" for label, value in zip(COST_LABELS, costs, strict=True)
        )
    )
    # The issue's figures come from a machine where the empty view serves ~7,500/s and the
    # minimal view ~2,000-2,500/s: as ratios to those anchors, its targets are
    # new ≥ 2,000/2,250 of the minimal view and repeat ≥ 4,000/7,500 of the empty view.
    # Measured here as the median of the rounds' ratios (each against its own anchor, next
    # to it in time), the verdict holds on any machine speed.
    need_new = TARGET_NEW / ISSUE_ANCHOR_NEW
    need_repeat = TARGET_REPEAT / ISSUE_EMPTY
    # The issue's p99 bound, 15 ms, over its minimal view's p99 of 5-8 ms (the strict end).
    p99_allowed = TARGET_NEW_P99_MS / ISSUE_ANCHOR_P99_MS
    p99_ratio = new["p99_ms"] / anchor_new["p99_ms"]
    client = "wrk" if wrk.available() else "Python clients; the issue's are wrk's"
    checks = [
        (f"new subjects ≥ {TARGET_NEW:,.0f}/s", new["requests_per_second"] >= TARGET_NEW),
        (f"new subjects p99 < {TARGET_NEW_P99_MS:.0f} ms", new["p99_ms"] < TARGET_NEW_P99_MS),
        (
            f"repeat subjects ≥ {TARGET_REPEAT:,.0f}/s",
            repeat["requests_per_second"] >= TARGET_REPEAT,
        ),
        (
            # The issue's anchor inserts "a new exposure": Kaizen's exposure row.
            f"scaled: new subjects ≥ {need_new:.2f} x the minimal view inserting a new exposure"
            f" (the issue's anchor): {new_to_row:.2f}",
            new_to_row >= need_new,
        ),
        (
            f"scaled, stricter: new subjects ≥ {need_new:.2f} x the minimal view inserting a"
            f" three-column row (the event row's own cost included): {new_ratio:.2f}",
            new_ratio >= need_new,
        ),
        (
            f"scaled: new subjects' p99 ≤ {p99_allowed:.2f} x the minimal view's: {p99_ratio:.2f}",
            p99_ratio <= p99_allowed,
        ),
        (
            f"scaled: repeat subjects ≥ {need_repeat:.2f} x the empty view: {repeat_to_empty:.2f}",
            repeat_to_empty >= need_repeat,
        ),
    ]
    for text, met in checks:
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
