"""The production shape: gunicorn, a Celery worker with beat, two clients posting at full speed.

Per shape of traffic, two client processes (load_client.py) post tagged predictions in
batches of 500, and feedback on some of them, over HTTP to gunicorn (2 sync workers) with an
ingest key, at least once, for KAIZEN_LOADTEST_SECONDS (default 10), while the deployment's
Celery worker with beat embedded folds every second (config.launcher's command, on a Redis
of the test's own). Once the last request is answered, the test polls the results
(overall and per breakdown attribute) of every experiment and the performance counts of
every model until they equal the ground truth computed with numpy from what the clients
recorded (ground_truth.py), and asserts that this catch-up took no longer than the
ingestion: projections keep up with full-speed traffic of any shape. One shape also stops and
restarts the broker and SIGKILLs the worker twice during ingestion (restarting it at once).

The test waits at most KAIZEN_LOADTEST_WAIT_SECONDS after ingestion (default: the ingestion's
duration, the criterion itself); a larger value measures a slower catch-up, which still
fails. Figures (events/s ingested and folded, catch-up time) are printed (`pytest -s`).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from rest_framework.test import APIClient

from apps.accounts import services as account_services

from . import ground_truth
from .ground_truth import ExperimentTruth, Recorded
from .processes import (
    LOOPBACK,
    Gunicorn,
    OwnRedis,
    Worker,
    celery_worker,
    end_other_sessions,
    stop_all,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("processes")]

SECONDS = float(os.environ.get("KAIZEN_LOADTEST_SECONDS", "10"))
WAIT_SECONDS = float(os.environ.get("KAIZEN_LOADTEST_WAIT_SECONDS", "0"))
AGGREGATION_INTERVAL_SECONDS = "1"
POLL_PAUSE = 0.2
VARIANTS = (("control", "1", 0.4), ("treatment", "2", 0.4), ("other", "3", 0.2))
METRICS = (("click", "binomial"), ("revenue", "mean"))


@dataclass(frozen=True)
class Shape:
    experiments: int = 1
    models: int = 1
    # 1: a new subject per prediction; more: returning subjects, about that many each.
    predictions_per_subject: float = 1.0
    # Values of the `cohort` attribute (0: none), besides `country` (5 values).
    cohorts: int = 0
    # Share of the ingestion spent trickling (batches of 10, 5 a second per client).
    trickle_share: float = 0.0
    # Stop and restart the broker; SIGKILL the worker (its beat and pool too) twice, restarting it.
    faults: bool = False
    seconds: float = SECONDS


SHAPES = {
    # The harness itself, on traffic any machinery keeps up with: small batches, every
    # feature of the truth (several experiments and models, returning subjects, multiple
    # exposures, breakdowns).
    "smoke_trickle": Shape(
        experiments=3,
        models=2,
        predictions_per_subject=4,
        cohorts=20,
        trickle_share=1.0,
    ),
    # Twice as long: a restarted worker takes seconds to consume again on a busy machine, and
    # each fault should meet a running one.
    "new_subject_per_prediction_with_kills": Shape(faults=True, seconds=2 * SECONDS),
    "returning_subjects": Shape(predictions_per_subject=8),
    "ramp": Shape(trickle_share=1 / 3),
    "fifty_experiments": Shape(experiments=50, models=5, predictions_per_subject=4),
    "breakdown_200_values": Shape(cohorts=200, predictions_per_subject=2),
}


# --- set-up -----------------------------------------------------------------------------------


def register(admin: APIClient, shape: Shape) -> list[dict[str, Any]]:
    """Models with versions 1-3 and running experiments on them; the experiments' specs."""
    attributes = ["country", "cohort"] if shape.cohorts else ["country"]
    models = [f"churn-{number}" for number in range(shape.models)]
    for model in models:
        body = {"name": model, "task": "binary_classification", "positive_label": "churn"}
        response = admin.post(
            "/api/v1/models", {**body, "segment_attributes": attributes}, format="json"
        )
        assert response.status_code == 201, response.json()
        for version in ("1", "2", "3"):
            response = admin.post(
                f"/api/v1/models/{model}/versions", {"version": version}, format="json"
            )
            assert response.status_code == 201, response.json()
    experiments = []
    for number in range(shape.experiments):
        spec = {
            "key": f"load-{number}",
            "model": models[number % len(models)],
            "variants": [list(variant) for variant in VARIANTS],
            "metrics": [list(metric) for metric in METRICS],
            "breakdown": attributes,
        }
        response = admin.post(
            "/api/v1/experiments",
            {
                "key": spec["key"],
                "model": spec["model"],
                "variants": [
                    {"key": key, "model_version": version, "weight": weight}
                    for key, version, weight in VARIANTS
                ],
                "control": "control",
                "metrics": [{"key": key, "type": kind} for key, kind in METRICS],
                "primary_metric": "click",
                "breakdown_attributes": attributes,
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
        assert admin.post(f"/api/v1/experiments/{spec['key']}/start").status_code == 200
        experiments.append(spec)
    return experiments


def raw_key(*scopes: str) -> str:
    _, raw = account_services.api_key_create(
        application="loadtest", name="-".join(scopes), scopes=scopes
    )
    return raw


def id_prefix() -> str:
    """The first 24 characters of UUIDs (8-4-4-4-) of one client's events, new each run."""
    raw = secrets.token_hex(10)
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-8{raw[17:20]}-"


class CeleryWithBeat:
    """The deployment's worker with beat embedded; killed and restarted on demand."""

    def __init__(self, directory: Path, environment: dict[str, str]) -> None:
        self.directory = directory
        self.environment = environment
        self.runs: list[Worker] = []

    def start(self) -> None:
        run = len(self.runs) + 1
        self.runs.append(
            celery_worker(
                self.directory / f"celery-{run}.log",
                beat_schedule=self.directory / f"celerybeat-{run}",
                **self.environment,
            )
        )

    def kill_and_restart(self) -> None:
        self.runs[-1].kill_group()
        self.start()

    def output(self) -> str:
        return "\n".join(
            f"--- worker run {number}:\n{run.output[-2000:]}"
            for number, run in enumerate(self.runs, 1)
        )


@dataclass
class Deployment:
    web: Gunicorn
    workers: CeleryWithBeat
    broker: OwnRedis
    clients: list[Worker]


@contextmanager
def production(tmp_path: Path) -> Iterator[Deployment]:
    """gunicorn and a Celery worker with beat, both on a Redis (broker and cache) of their own;
    every process (clients too) stopped afterwards, and the database's sessions ended."""
    broker = OwnRedis(tmp_path)
    broker.start()
    environment = {
        "REDIS_URL": broker.url,
        "CELERY_BROKER_URL": broker.url,
        "KAIZEN_AGGREGATION_INTERVAL_SECONDS": AGGREGATION_INTERVAL_SECONDS,
    }
    workers = CeleryWithBeat(tmp_path, environment)
    clients: list[Worker] = []
    web: Gunicorn | None = None
    try:
        workers.start()
        web = Gunicorn(tmp_path / "gunicorn.log", **environment)
        web.wait_ready()
        wait_for(lambda: consuming(broker), "the worker to consume from the broker")
        yield Deployment(web=web, workers=workers, broker=broker, clients=clients)
    finally:
        stop_all([*workers.runs, *([web] if web else []), *clients], timeout=10)
        end_other_sessions()
        broker.stop()


def consuming(broker: OwnRedis) -> bool:
    """A worker waits on the broker's queues (a client blocked in BRPOP): it is consuming."""
    try:
        return any(client.get("cmd") == "brpop" for client in broker.client().client_list())
    except redis.ConnectionError:
        return False


# --- ingestion --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingestion:
    started: float
    ended: float
    outputs: list[Path]
    figures: list[dict[str, Any]]

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def total(self, name: str) -> int:
        return sum(int(figures[name]) for figures in self.figures)

    @property
    def statuses(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for figures in self.figures:
            for status, count in figures["statuses"].items():
                found[status] = found.get(status, 0) + count
        return found


def start_clients(
    tmp_path: Path, base_url: str, experiments: list[dict[str, Any]], shape: Shape, start_at: float
) -> list[tuple[Worker, Path]]:
    clients = []
    key = raw_key("ingest")
    for index in range(2):
        output = tmp_path / f"client-{index}"
        spec = {
            "base_url": base_url,
            "key": key,
            "index": index,
            "seed": index + 1,
            "id_prefix": id_prefix(),
            "start_at": start_at,
            "seconds": shape.seconds,
            "output": str(output),
            "experiments": experiments,
            "predictions_per_subject": shape.predictions_per_subject,
            "cohorts": shape.cohorts,
            "trickle_seconds": shape.seconds * shape.trickle_share,
        }
        spec_path = tmp_path / f"client-{index}-spec.json"
        spec_path.write_text(json.dumps(spec))
        worker = Worker(
            ["-m", "tests.analytics.load_client", str(spec_path)], tmp_path / f"client-{index}.log"
        )
        clients.append((worker, output))
    return clients


def inject_faults(
    workers: CeleryWithBeat, broker: OwnRedis, start_at: float, seconds: float
) -> list[str]:
    """During ingestion: stop the broker at 1/5 for a tenth of the ingestion (at least 2 s)
    and start it again, then SIGKILL the worker with its beat and pool at 9/20 and at 3/4
    (each time restarted at once). Each fault waits for a worker that consumes from the
    broker, until half a second before ingestion ends. What happened when, for the report."""
    ends_at = start_at + seconds
    down = max(2.0, seconds / 10)
    done = []

    def fault(offset: float, what: str, action: Callable[[], None]) -> None:
        time.sleep(max(0.0, start_at + offset - time.time()))
        while not consuming(broker) and time.time() < ends_at - 0.5:
            time.sleep(0.05)
        state = "" if consuming(broker) else " (no worker was consuming yet)"
        action()
        done.append(f"{what} at {time.time() - start_at:.1f} s{state}")

    fault(0.2 * seconds, "broker stopped", broker.stop)
    time.sleep(down)
    broker.start()
    done.append(f"broker started at {time.time() - start_at:.1f} s")
    fault(0.45 * seconds, "worker killed and restarted", workers.kill_and_restart)
    fault(0.75 * seconds, "worker killed and restarted", workers.kill_and_restart)
    return done


def finish_clients(clients: list[tuple[Worker, Path]], start_at: float, shape: Shape) -> Ingestion:
    figures = []
    for worker, output in clients:
        remaining = start_at + shape.seconds + 150 - time.time()
        try:
            code = worker.process.wait(timeout=max(remaining, 1.0))
        except subprocess.TimeoutExpired:
            pytest.fail(f"a client did not finish:\n{worker.output[-3000:]}")
        saved = Path(f"{output}.json")
        assert saved.exists(), f"a client crashed:\n{worker.output[-3000:]}"
        figures.append(json.loads(saved.read_text()))
        # A client that met an answer it must not retry (400, 409…) says so and exits 2.
        assert code == 0, figures[-1]["error"]
    return Ingestion(
        started=start_at,
        ended=max(float(f["last_answered"]) for f in figures),
        outputs=[output for _, output in clients],
        figures=figures,
    )


# --- the answers ------------------------------------------------------------------------------


class Api:
    """GETs through gunicorn with a read key (a new connection each: sync workers close it)."""

    def __init__(self, base_url: str, key: str) -> None:
        self.port = int(base_url.rsplit(":", 1)[1])
        self.headers = {"Authorization": f"Bearer {key}"}

    def get(self, path: str) -> Any:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=60)
        try:
            conn.request("GET", path, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, (path, response.status, body[:2000])
        return orjson.loads(body)


def experiment_differences(api: Api, truth: ExperimentTruth, *, segments: bool) -> list[str]:
    """How an experiment's results differ from the truth: overall, and per breakdown
    attribute when `segments`."""
    overall = api.get(f"/api/v1/experiments/{truth.key}/results")
    answers = {
        attribute: api.get(f"/api/v1/experiments/{truth.key}/results?segment={attribute}")
        for attribute in (truth.segments if segments else ())
    }
    return ground_truth.differences(truth, overall, answers)


def performance_differences(api: Api, counts: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for model, expected in counts.items():
        found: dict[str, int] = {}
        for row in api.get(f"/api/v1/models/{model}/performance?bucket=day")["results"]:
            found[row["version"]] = found.get(row["version"], 0) + row["count"]
        if found != expected:
            out.append(f"{model}: predictions per version {found}, expected {expected}")
    return out


@dataclass
class CatchUp:
    caught_up_at: float | None
    differences: list[str]
    lag: dict[str, Any]


def wait_for_truth(
    api: Api, truths: list[ExperimentTruth], counts: dict[str, dict[str, int]], deadline: float
) -> CatchUp:
    """Poll until every answer equals the truth, or the deadline passes.

    First the performance counts and each experiment's overall results, one request each: an
    answer once equal stays so (no event arrives any more), so all were equal when the last
    was seen equal. Then every answer with the breakdowns (many more requests): equal at the
    first look, the catch-up time stays the first poll's; else polled on, and it is when
    they are."""
    pending = list(truths)
    performance_equal = False
    while True:
        found: list[str] = []
        if not performance_equal:
            found = performance_differences(api, counts)
            performance_equal = not found
        while not found and pending:
            found = experiment_differences(api, pending[0], segments=False)
            if not found:
                pending.pop(0)
        if not found:
            break
        if time.time() > deadline:
            return CatchUp(caught_up_at=None, differences=found, lag=lag(api))
        time.sleep(POLL_PAUSE)
    caught_up_at = time.time()
    first_look = True
    while found := every_difference(api, truths, counts):
        if time.time() > deadline:
            return CatchUp(caught_up_at=None, differences=found, lag=lag(api))
        time.sleep(POLL_PAUSE)
        first_look = False
    return CatchUp(caught_up_at=caught_up_at if first_look else time.time(), differences=[], lag={})


def lag(api: Api) -> dict[str, Any]:
    """What /readyz says each projection has not folded yet."""
    return dict(api.get("/readyz").get("projections", {}))


def every_difference(
    api: Api, truths: list[ExperimentTruth], counts: dict[str, dict[str, int]]
) -> list[str]:
    """Every answer (breakdowns too) against the truth, two requests at a time (as many as
    gunicorn has workers)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = list(
            pool.map(lambda truth: experiment_differences(api, truth, segments=True), truths)
        )
    return performance_differences(api, counts) + [line for lines in found for line in lines]


# --- the test ---------------------------------------------------------------------------------


def server_errors(log: str) -> list[str]:
    """The distinct exception lines of a gunicorn log (`module.Error: message`)."""
    found = re.findall(r"^[\w.]+(?:Error|Exception|Detected)\b.*$", log, re.MULTILINE)
    return sorted(set(found))


def describe(
    name: str,
    ingestion: Ingestion,
    recorded: Recorded,
    truths: list[ExperimentTruth],
    catch_up: CatchUp,
    faults: list[str],
) -> str:
    sent = recorded.predictions + recorded.feedback
    exposures = sum(truth.exposures for truth in truths)
    lines = [
        f"[{name}] ingested {sent:,} events ({recorded.predictions:,} predictions, "
        f"{recorded.feedback:,} feedback; {exposures:,} exposures) in {ingestion.seconds:.1f} s"
        f" = {sent / ingestion.seconds:,.0f} events/s; {ingestion.total('requests'):,} requests"
        f" (statuses {ingestion.statuses}, "
        f"{ingestion.total('connection_errors')} connection errors, "
        f"{ingestion.total('retried')} retried, {ingestion.total('resent')} sent again; "
        f"{ingestion.total('duplicates'):,} duplicates reported)",
    ]
    if faults:
        lines.append(f"[{name}] faults: {'; '.join(faults)}")
    log_events = sent + exposures
    if catch_up.caught_up_at is not None:
        catching = catch_up.caught_up_at - ingestion.ended
        folding = catch_up.caught_up_at - ingestion.started
        lines.append(
            f"[{name}] caught up {catching:.1f} s after ingestion "
            f"(allowed {ingestion.seconds:.1f} s);"
            f" {log_events:,} log events folded in {folding:.1f} s = {log_events / folding:,.0f}"
            " events/s"
        )
    else:
        waited = time.time() - ingestion.ended
        lines.append(
            f"[{name}] NOT caught up {waited:.1f} s after ingestion; projections: {catch_up.lag};"
            f" first differences: {catch_up.differences[:5]}"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(SHAPES))
def test_production_shape__two_clients_at_full_speed__results_equal_truth_within_ingestion_time(
    transactional_db, make_client, tmp_path, name
):
    shape = SHAPES[name]
    # Given running experiments, gunicorn, a Celery worker with beat and their own Redis
    experiments = register(make_client("read", "manage"), shape)
    with production(tmp_path) as deployment:
        web = deployment.web
        # When two clients post at full speed (with the worker killed and the broker
        # restarted meanwhile, for one shape)
        start_at = time.time() + 2.0
        clients = start_clients(tmp_path, web.base_url, experiments, shape, start_at)
        deployment.clients += [client for client, _ in clients]
        faults = (
            inject_faults(deployment.workers, deployment.broker, start_at, shape.seconds)
            if shape.faults
            else []
        )
        ingestion = finish_clients(clients, start_at, shape)
        # Then once ingestion ends, every answer comes to equal the truth
        recorded = ground_truth.load(ingestion.outputs)
        truths = [
            ground_truth.experiment_truth(recorded, number, experiment)
            for number, experiment in enumerate(experiments)
        ]
        counts = ground_truth.performance_counts(recorded, experiments)
        api = Api(web.base_url, raw_key("read"))
        patience = max(WAIT_SECONDS, ingestion.seconds)
        catch_up = wait_for_truth(api, truths, counts, deadline=ingestion.ended + patience)
        report = describe(name, ingestion, recorded, truths, catch_up, faults)
        print(report)  # noqa: T201 - the figures the issue asks for (pytest -s shows them)
        assert catch_up.caught_up_at is not None, (
            f"{report}\n{deployment.workers.output()}\n--- gunicorn:\n{web.output[-2000:]}"
        )
        errors = server_errors(web.output)
    # ... within the time the ingestion took
    catching_up = catch_up.caught_up_at - ingestion.ended
    assert catching_up <= ingestion.seconds, report
    # ... and no request was answered 500 (the client sent it again: stored once)
    assert "500" not in ingestion.statuses, f"{report}\nserver errors: {errors}"
    # ... and, every request answered, each event was accepted once, then a duplicate
    if ingestion.total("connection_errors") == 0:
        assert ingestion.total("accepted") == recorded.predictions + recorded.feedback
