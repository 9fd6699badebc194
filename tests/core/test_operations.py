"""The operations endpoints: /healthz, /readyz, /metrics, the schema and docs, static files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, values
from prometheus_client.parser import text_string_to_metric_families

from apps.core.metrics import render

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of an exposition, 0.0 when it is not there yet."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


@pytest.fixture
def single_process(monkeypatch):
    """The process registry (no PROMETHEUS_MULTIPROC_DIR), as under the test client."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


# /healthz


@pytest.mark.django_db
def test_healthz__no_key__answers_ok(anonymous):
    # When
    response = anonymous.get("/healthz")
    # Then
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_operations_endpoint__write_method__405_error_body(anonymous, path, method):
    # When
    response = getattr(anonymous, method)(path, data=b"{}", content_type="application/json")
    # Then
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


# /readyz


@pytest.mark.django_db
def test_readyz__database_and_redis_up__ready_with_broker_state(anonymous):
    # When
    response = anonymous.get("/readyz")
    # Then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["broker"] == {"status": "ok"}
    assert body["worker"]["status"] in {"ok", "unknown"}


@pytest.mark.django_db
def test_readyz__broker_and_cache_on_a_dead_port__still_200_broker_unavailable(anonymous, settings):
    # Given: Redis (broker and cache) points at a port nothing listens on
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.CELERY_BROKER_URL = dead
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": dead,
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
    # When
    response = anonymous.get("/readyz")
    # Then: the database answers, so Kaizen is ready (DESIGN.md principle 4)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["broker"] == {"status": "unavailable", "error": "ConnectionError"}
    assert body["worker"] == {"status": "unknown"}


@pytest.mark.django_db
def test_readyz__broker_url_is_a_unix_socket_path__pinged_as_unix_socket(
    anonymous, settings, tmp_path
):
    # Given: the kombu spelling of a Unix socket that does not exist
    settings.CELERY_BROKER_URL = f"redis+socket://{tmp_path}/missing.sock"
    # When
    response = anonymous.get("/readyz")
    # Then: redis-py was asked for that socket (a connection error, not a bad URL)
    assert response.status_code == 200
    assert response.json()["broker"] == {"status": "unavailable", "error": "ConnectionError"}


def test_readyz__database_does_not_answer__503_error_body():
    # Given: a process whose DATABASE_URL points at a port nothing listens on
    script = textwrap.dedent(
        """
        import json, django
        django.setup()
        from django.test import Client
        response = Client().get("/readyz")
        print(json.dumps({"status": response.status_code,
                          "retry_after": response.get("Retry-After"),
                          "body": response.json()}))
        """
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{_closed_port()}/kaizen",
        "DATABASE_CONNECT_TIMEOUT": "2",
    }
    # When
    result = subprocess.run(  # noqa: S603 - this interpreter running our own script
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503
    assert answer["retry_after"] == "5"
    body = answer["body"]
    assert body["error"] == {
        "code": "unavailable",
        "message": "The database does not answer.",
        "details": [],
    }
    assert body["status"] == "unavailable"
    assert body["database"] == "OperationalError"
    assert body["broker"]["status"] in {"ok", "unavailable"}
    assert "worker" not in body


# /metrics


@pytest.mark.django_db
def test_metrics__no_token_configured__prometheus_text(anonymous, single_process, settings):
    # Given
    settings.KAIZEN_METRICS_TOKEN = ""
    # When
    response = anonymous.get("/metrics")
    # Then
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    text = response.content.decode()
    for name in (
        "kaizen_http_requests_total",
        "kaizen_http_request_duration_seconds",
        "kaizen_events_stored_total",
        "kaizen_events_duplicate_total",
        "kaizen_events_rejected_total",
    ):
        assert f"# HELP {name} " in text


@pytest.mark.django_db
def test_metrics__requests_by_route__counter_and_histogram_increment(anonymous, single_process):
    # Given
    before = anonymous.get("/metrics").content.decode()
    # When: two answered requests on one route and one on no route
    anonymous.get("/healthz")
    anonymous.get("/healthz")
    anonymous.get("/no/such/page/12345")
    # Then: counted by route pattern, never by raw path
    after = anonymous.get("/metrics").content.decode()
    ok = {"method": "GET", "route": "healthz", "status": "200"}
    missing = {"method": "GET", "route": "unmatched", "status": "404"}
    timed = {"method": "GET", "route": "healthz"}
    assert _sample(after, "kaizen_http_requests_total", **ok) == (
        _sample(before, "kaizen_http_requests_total", **ok) + 2
    )
    assert _sample(after, "kaizen_http_requests_total", **missing) == (
        _sample(before, "kaizen_http_requests_total", **missing) + 1
    )
    assert _sample(after, "kaizen_http_request_duration_seconds_count", **timed) == (
        _sample(before, "kaizen_http_request_duration_seconds_count", **timed) + 2
    )
    # (not "12345" alone: a _created timestamp's digits may hold it)
    assert "no/such/page" not in after


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", "Basic bWV0cmljczpzM2NyZXQ=", "s3cret-metrics"],
)
def test_metrics__token_configured_and_not_sent__401(anonymous, settings, authorization):
    # Given
    settings.KAIZEN_METRICS_TOKEN = "s3cret-metrics"
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    # When
    response = anonymous.get("/metrics", **headers)
    # Then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert b"kaizen_http_requests_total" not in response.content


@pytest.mark.django_db
def test_metrics__token_configured_and_sent__200(anonymous, settings, single_process):
    # Given
    settings.KAIZEN_METRICS_TOKEN = "s3cret-metrics"
    # When
    response = anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics")
    # Then
    assert response.status_code == 200
    assert b"# HELP kaizen_http_requests_total " in response.content


def _worker_value(pid: int, metric: str, sample: str, labels: list[str], values_: list[str]):
    """A sample written the way a gunicorn worker with this pid writes it."""
    value_class = values.MultiProcessValue(process_identifier=lambda: pid)
    return value_class("counter", metric, sample, labels, values_, "help")


@pytest.fixture
def multiprocess_dir(monkeypatch, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR for this test; the sample files it opens are closed after."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    yield tmp_path
    values.close_all_multiprocess_files()


def test_metrics__multiprocess_dir__samples_of_every_worker_summed(multiprocess_dir):
    # Given: two gunicorn workers (pids 101 and 102) wrote request counts to the folder
    labels = ["method", "route", "status"]
    label_values = ["GET", "healthz", "200"]
    first = _worker_value(
        101, "kaizen_http_requests", "kaizen_http_requests_total", labels, label_values
    )
    second = _worker_value(
        102, "kaizen_http_requests", "kaizen_http_requests_total", labels, label_values
    )
    first.inc(2)
    second.inc(3)
    # When
    output, content_type = render()
    # Then: one merged series, and only what the folder holds
    text = output.decode()
    assert content_type == CONTENT_TYPE_LATEST
    ok = {"method": "GET", "route": "healthz", "status": "200"}
    assert _sample(text, "kaizen_http_requests_total", **ok) == 5.0
    assert sorted(path.name for path in multiprocess_dir.iterdir()) == [
        "counter_101.db",
        "counter_102.db",
    ]


def test_gunicorn_child_exit__worker_died__its_live_gauges_removed_counters_kept(
    monkeypatch, tmp_path
):
    # Given: a worker left a live gauge file and a counter file
    import runpy

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    config = runpy.run_path(str(BASE_DIR / "config" / "gunicorn.conf.py"))

    class Worker:
        pid = 4242

    # When
    config["child_exit"](None, Worker())
    # Then
    assert sorted(path.name for path in tmp_path.iterdir()) == ["counter_4242.db"]


def test_gunicorn_on_starting__stale_samples__folder_emptied(monkeypatch, tmp_path):
    # Given: samples left by an earlier run
    import runpy

    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    config = runpy.run_path(str(BASE_DIR / "config" / "gunicorn.conf.py"))
    # When
    config["on_starting"](None)
    # Then
    assert list(folder.iterdir()) == []


def test_gunicorn_config__environment__bind_and_workers(monkeypatch):
    # Given
    import runpy

    monkeypatch.setenv("KAIZEN_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    # When
    config = runpy.run_path(str(BASE_DIR / "config" / "gunicorn.conf.py"))
    # Then
    assert config["bind"] == ["0.0.0.0:9000"]
    assert config["workers"] == 3
    assert config["wsgi_app"] == "config.wsgi:application"


def test_gunicorn_config__no_environment__two_workers_on_localhost(monkeypatch):
    # Given
    import runpy

    monkeypatch.delenv("KAIZEN_BIND", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    # When
    config = runpy.run_path(str(BASE_DIR / "config" / "gunicorn.conf.py"))
    # Then
    assert config["bind"] == ["127.0.0.1:8000"]
    assert config["workers"] == 2


# Schema, docs, admin and its static files


@pytest.mark.django_db
def test_schema__no_key__is_openapi_3(anonymous):
    response = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")
    assert "/api/v1/events" in response.json()["paths"]


@pytest.mark.django_db
def test_docs__no_key__swagger_page(anonymous):
    # When
    response = anonymous.get("/api/docs/")
    # Then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()


@pytest.mark.django_db
def test_admin_login__anonymous__page_and_its_stylesheet_served(anonymous):
    # When
    page = anonymous.get("/admin/login/")
    stylesheet = anonymous.get("/static/admin/css/base.css")
    # Then: whitenoise serves the admin's static files (no separate web server)
    assert page.status_code == 200
    assert b'name="password"' in page.content
    assert stylesheet.status_code == 200
    assert stylesheet["Content-Type"].startswith("text/css")
