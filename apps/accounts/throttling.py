"""Per-key rate limiting on the Redis cache that fails open when Redis is down.

The limit is `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_key"]` (env KAIZEN_RATE_LIMIT),
read per request, so a changed setting applies without a restart of the class. Requests are
counted in fixed windows (one counter per key and window, changed with an atomic Redis
INCR pipelined with the SET that opens it): one round trip per request whatever the rate,
and no lost counts between concurrent workers, where DRF's stock throttle rewrites a list
of every request's timestamp (read-modify-write, as long as the rate) on each call.

DESIGN.md principle 4: Redis being down delays numbers and loses nothing, so the limiter lets
requests through; after a failure it stops asking Redis for a few seconds so that a dead
Redis costs no request a connect timeout.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts.authentication import KeyPrincipal

logger = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_SECONDS = 5.0
_skip_until = 0.0


_clients: dict[str, redis.Redis[bytes]] = {}


def _redis_client() -> redis.Redis[bytes]:
    """One client (and connection pool) per process for the default cache's Redis.

    Django's RedisCache builds a new client object on every call, a measurable share of a
    small request; keyed by location so that changed CACHES settings (tests) take effect.
    """
    config: dict[str, Any] = dict(settings.CACHES["default"])
    location = str(config["LOCATION"])
    client = _clients.get(location)
    if client is None:
        options: dict[str, Any] = config.get("OPTIONS", {})
        client = redis.Redis.from_url(
            location,
            socket_connect_timeout=options.get("socket_connect_timeout"),
            socket_timeout=options.get("socket_timeout"),
        )
        _clients[location] = client
    return client


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"
    # Set by SimpleRateThrottle.__init__ from the rate (None when there is no limit).
    num_requests: int | None
    duration: int | None
    window_ends: float

    def get_rate(self) -> str | None:
        # DRF binds THROTTLE_RATES when the module is imported; read the setting now instead.
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        rate = rates.get(self.scope or "")
        return None if rate is None else str(rate)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        principal = request.user
        if not isinstance(principal, KeyPrincipal):
            return None
        return f"throttle:{self.scope}:{principal.prefix}"

    def allow_request(self, request: Request, view: Any) -> bool:
        global _skip_until
        if self.rate is None or self.num_requests is None or self.duration is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None or time.monotonic() < _skip_until:
            return True
        try:
            count = self._count(key, self.duration)
        except Exception as error:  # noqa: BLE001 - any cache failure: fail open, never 500
            _skip_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            logger.warning("rate_limit.unavailable", extra={"error": type(error).__name__})
            return True
        return count <= self.num_requests

    def _count(self, key: str, duration: int) -> int:
        """This request's number in the current window of `duration` seconds."""
        self.now = self.timer()
        window = math.floor(self.now / duration)
        self.window_ends = (window + 1) * duration
        bucket = f"{key}:{window}"
        # The counter outlives its window by a full window: an increment that races the
        # expiry never recreates it without a timeout.
        # One round trip: open the counter with its timeout if absent, then count this request.
        # (SET NX EX + INCR rather than INCR + EXPIRE NX: the embedded Redis is 6.2.)
        redis_key = self.cache.make_and_validate_key(bucket)
        client = _redis_client()
        pipeline = client.pipeline(transaction=False)
        pipeline.set(redis_key, 0, ex=2 * duration, nx=True)
        pipeline.incr(redis_key)
        _, count = pipeline.execute()
        return int(count)

    def wait(self) -> float | None:
        """Seconds until the current window ends (DRF rounds it up for Retry-After)."""
        return max(self.window_ends - self.now, 0.0)
