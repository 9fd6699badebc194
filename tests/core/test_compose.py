"""docker-compose.yml, the Dockerfile and README.md agree with the settings and the launcher.

No Docker engine runs here: the files are read, and the settings are booted in a subprocess
with the environment compose would give them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import launcher

BASE_DIR = Path(__file__).resolve().parent.parent.parent
KAIZEN_SERVICES = ("migrate", "web", "worker", "beat")
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS")
# The modules of a deployment that read the environment (app code reads settings only).
READERS = (
    "config/settings/base.py",
    "config/embedded.py",
    "config/gunicorn.conf.py",
    "config/launcher.py",
    "config/wsgi.py",
    "config/celery.py",
    "apps/core/metrics.py",
)
_ENV_HELPERS = {"str", "bool", "int", "float", "list", "path", "json", "url", "db_url"}


def _is_os_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _name_read(node: ast.AST) -> str | None:
    """The variable a call like env.int("X"), os.environ.get("X") or os.environ["X"] reads."""
    if isinstance(node, ast.Subscript) and _is_os_environ(node.value):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value
        return None
    if not isinstance(node, ast.Call) or not node.args:
        return None
    first = node.args[0]
    if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
        return None
    func = node.func
    reads_env_helper = (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "env"
        and func.attr in _ENV_HELPERS
    )
    reads_os_environ = (
        isinstance(func, ast.Attribute)
        and func.attr in {"get", "setdefault"}
        and _is_os_environ(func.value)
    )
    return first.value if reads_env_helper or reads_os_environ else None


def _variables_read() -> set[str]:
    names: set[str] = set()
    for path in READERS:
        tree = ast.parse((BASE_DIR / path).read_text())
        names.update(name for node in ast.walk(tree) if (name := _name_read(node)))
    return names


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    return compose


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def test_variables_read__scan_of_the_readers__finds_the_known_ones():
    # When
    names = _variables_read()
    # Then: the scan itself works (each kind of read is found)
    assert {
        "SECRET_KEY",  # env.str
        "DEBUG",  # env.bool
        "KAIZEN_MAX_BODY_BYTES",  # env.int
        "ALLOWED_HOSTS",  # env.list
        "KAIZEN_HOME",  # os.environ.get
        "KAIZEN_BIND",  # gunicorn.conf.py
        "PROMETHEUS_MULTIPROC_DIR",  # metrics.py
        "KAIZEN_DEMO_PASSWORD",  # launcher.py
    } <= names


@pytest.mark.parametrize("service", KAIZEN_SERVICES)
def test_compose__kaizen_service__sets_only_variables_kaizen_reads(service):
    # Given
    environment = _service(service)["environment"]
    # When
    unknown = set(environment) - _variables_read()
    # Then
    assert unknown == set()


@pytest.mark.parametrize("service", KAIZEN_SERVICES)
def test_compose__kaizen_service__production_with_every_required_value(service):
    # Given
    environment = _service(service)["environment"]
    # Then
    assert environment["KAIZEN_ENV"] == "production"
    for name in REQUIRED_IN_PRODUCTION:
        assert environment[name], name
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")  # no default secret
    assert environment["DATABASE_URL"].startswith("postgres://")
    assert environment["REDIS_URL"].startswith("redis://")


def test_compose__web__runs_the_launchers_web_command():
    # Given
    command = _service("web")["command"]
    # Then
    assert command == list(launcher.WEB_COMMAND)


def test_compose__worker__runs_the_launchers_worker_command_on_every_queue():
    # Given
    command = _service("worker")["command"]
    # Then
    assert command[: len(launcher.WORKER_COMMAND)] == list(launcher.WORKER_COMMAND)
    assert command[len(launcher.WORKER_COMMAND) :] == ["--loglevel", "INFO"]
    assert command[command.index("--queues") + 1].split(",") == [
        "default",
        "aggregation",
        "retraining",
        "notifications",
    ]


def test_compose__beat__runs_the_launchers_beat_command_with_a_kept_schedule():
    # Given
    beat = _service("beat")
    command = beat["command"]
    # Then
    assert command[: len(launcher.BEAT_COMMAND)] == list(launcher.BEAT_COMMAND)
    schedule = command[command.index("--schedule") + 1]
    assert schedule == "/var/lib/kaizen/celerybeat-schedule"
    assert beat["volumes"] == ["beat-schedule:/var/lib/kaizen"]


def test_compose__web__multiprocess_metrics_folder_is_a_fresh_tmpfs():
    # Given
    web = _service("web")
    folder = "/tmp/prometheus"  # noqa: S108 - a tmpfs of the container, not of this machine
    # Then
    assert web["environment"]["PROMETHEUS_MULTIPROC_DIR"] == folder
    assert web["tmpfs"] == [folder]


def test_compose__healthchecks__readyz_pg_isready_redis_ping():
    # Given
    services = _compose()["services"]
    # Then
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "celerybeat-schedule" in " ".join(services["beat"]["healthcheck"]["test"])


def test_compose__services__start_after_healthy_dependencies_and_migration():
    # Given
    services = _compose()["services"]
    # Then
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_compose__stateful_services__data_on_named_volumes():
    # Given
    compose = _compose()
    # Then
    assert compose["services"]["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql"]
    assert compose["services"]["redis"]["volumes"] == ["redis-data:/data"]
    assert set(compose["volumes"]) == {"postgres-data", "redis-data", "beat-schedule"}


def test_compose__web_healthcheck__host_header_accepted_by_allowed_hosts():
    # Given: the Python of the web healthcheck, with its HTTP call captured
    code = _service("web")["healthcheck"]["test"][3]
    cases = {
        "kaizen.example.com,localhost": "kaizen.example.com",
        ".example.com": "example.com",
        "*": "localhost",
    }
    for allowed_hosts, expected in cases.items():
        script = textwrap.dedent(
            f"""
            import os, urllib.request
            os.environ["ALLOWED_HOSTS"] = {allowed_hosts!r}
            def urlopen(request, timeout):
                print(request.full_url, request.get_header("Host"))
            urllib.request.urlopen = urlopen
            """
        )
        # When
        result = subprocess.run(  # noqa: S603 - this interpreter running our own script
            [sys.executable, "-c", script + code],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        # Then
        assert result.stdout.split() == ["http://127.0.0.1:8000/readyz", expected]


def _interpolated(value: str) -> str:
    """Compose's ${NAME:-default} and ${NAME:?message}, given a value for what has none."""

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if operator == ":-":
            return rest
        return {"SECRET_KEY": "x" * 50}.get(name, f"value-of-{name}")

    return re.sub(r"\$\{(\w+)(:-|:\?)([^}]*)\}", one, value)


def _boot_settings(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import json, django
        django.setup()
        from django.conf import settings
        database = settings.DATABASES["default"]
        print(json.dumps({
            "production": settings.PRODUCTION,
            "debug": settings.DEBUG,
            "database": [database["HOST"], database["NAME"], database["USER"]],
            "broker": settings.CELERY_BROKER_URL,
            "allowed_hosts": settings.ALLOWED_HOSTS,
            "secure_cookies": settings.SESSION_COOKIE_SECURE,
        }))
        """
    )
    inherited = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    return subprocess.run(  # noqa: S603 - this interpreter running our own script
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env={**inherited, "DJANGO_SETTINGS_MODULE": "config.settings", **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose__web_environment__settings_boot_in_production(tmp_path):
    # Given: the web service's environment as compose would pass it (its tmpfs made here)
    environment = {
        name: _interpolated(str(value)) for name, value in _service("web")["environment"].items()
    }
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    # When
    result = _boot_settings(environment)
    # Then
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "production": True,
        "debug": False,
        "database": ["postgres", "kaizen", "kaizen"],
        "broker": "redis://redis:6379/0",
        "allowed_hosts": ["localhost", "127.0.0.1"],
        "secure_cookies": True,
    }


@pytest.mark.parametrize(
    "missing",
    [("SECRET_KEY",), ("DATABASE_URL",), ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")],
)
def test_production__required_value_missing__refuses_to_boot_naming_it(missing):
    # Given: production with everything but `missing`
    environment = {
        "KAIZEN_ENV": "production",
        "SECRET_KEY": "x" * 50,
        "DATABASE_URL": "postgres://kaizen:kaizen@127.0.0.1:1/kaizen",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "ALLOWED_HOSTS": "kaizen.example.com",
    }
    for name in missing:
        del environment[name]
    # When
    result = _boot_settings(environment)
    # Then: it stops at the settings, names each missing value, and starts no server
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        "django.core.exceptions.ImproperlyConfigured: KAIZEN_ENV=production needs "
        + ", ".join(missing)
        + "; set them in the environment (see README.md, 'Configuration')."
    )
    assert result.stdout == ""


def test_dockerfile__default_command__is_the_web_command():
    # Given
    lines = (BASE_DIR / "Dockerfile").read_text().splitlines()
    # When
    command = json.loads(
        next(line for line in lines if line.startswith("CMD ")).removeprefix("CMD ")
    )
    # Then
    assert command == list(launcher.WEB_COMMAND)


def test_readme__configuration_table__lists_every_variable_kaizen_reads():
    # Given
    readme = (BASE_DIR / "README.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", readme, flags=re.MULTILINE))
    # When
    undocumented = _variables_read() - rows - {"DJANGO_SETTINGS_MODULE"}
    # Then
    assert undocumented == set()
