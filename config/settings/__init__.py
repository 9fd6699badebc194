"""Settings that run Kaizen: everything comes from the environment (see base.py).

Importing a sibling module (config.settings.test) imports this package first; the guard
keeps that import from configuring (and starting embedded servers) for the wrong settings.
"""

import os

if os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings") == "config.settings":
    from config.settings.base import *  # noqa: F403
