"""Kaizen project configuration: settings, URLs, WSGI, Celery and the embedded services."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
