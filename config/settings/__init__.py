"""Settings that run Kaizen: everything comes from the environment (see base.py).

Importing a sibling module (config.settings.test) imports this package first; the guard
keeps that import from configuring (and starting embedded servers) for the wrong settings.
manage.py, wsgi.py and config/celery.py set DJANGO_SETTINGS_MODULE before importing this, so
an unset variable means a sibling is being imported directly: do nothing then either.
"""

import os

if os.environ.get("DJANGO_SETTINGS_MODULE") == "config.settings":
    from config.settings.base import *  # noqa: F403
