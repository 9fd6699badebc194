"""Settings of the assignment benchmark's server: Kaizen's, plus the anchor views' routes."""

from config.settings.base import *  # noqa: F403

ROOT_URLCONF = "bench.anchor_urls"
