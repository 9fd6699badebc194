"""Per-key rate limiting on the Redis cache that fails open when Redis is down.

DESIGN.md principle 4: Redis being down delays numbers and loses nothing, so the limiter lets
requests through; after a failure it stops asking Redis for a few seconds so that a dead
Redis costs no request a connect timeout.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.authentication import KeyPrincipal

logger = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_SECONDS = 5.0
_skip_until = 0.0


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        principal = request.user
        if not isinstance(principal, KeyPrincipal):
            return None
        return f"throttle:{self.scope}:{principal.prefix}"

    def allow_request(self, request: Request, view: Any) -> bool:
        global _skip_until
        if time.monotonic() < _skip_until:
            return True
        try:
            return super().allow_request(request, view)
        except Exception as error:  # noqa: BLE001 - any cache failure: fail open, never 500
            _skip_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            logger.warning("rate_limit.unavailable", extra={"error": type(error).__name__})
            return True
