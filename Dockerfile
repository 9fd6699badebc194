# Kaizen's one image: docker-compose.yml runs it as web (gunicorn), worker and beat (Celery).
# Production reads everything from the environment; see README.md, "Configuration".
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    STATIC_ROOT=/app/static \
    KAIZEN_BIND=0.0.0.0:8000

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p apps config && touch apps/__init__.py config/__init__.py \
    && pip install . \
    && pip uninstall --yes kaizen

COPY manage.py ./
COPY config ./config
COPY apps ./apps

# Static files of the admin and the API docs, served by whitenoise from gunicorn. Settings
# only need URLs to import (nothing connects): placeholders keep the embedded servers off.
RUN DATABASE_URL=postgres://build@127.0.0.1:1/build REDIS_URL=redis://127.0.0.1:1/0 \
    python manage.py collectstatic --noinput --verbosity 0

# An unprivileged user; /var/lib/kaizen holds beat's schedule (a volume in compose).
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin kaizen \
    && mkdir -p /var/lib/kaizen \
    && chown kaizen /var/lib/kaizen
USER kaizen

EXPOSE 8000
CMD ["gunicorn", "--config", "config/gunicorn.conf.py"]
