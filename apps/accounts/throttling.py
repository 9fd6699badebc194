"""Per-key rate limiting on Redis, counted in leases, failing open when Redis is down.

The limit is `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_key"]` (env KAIZEN_RATE_LIMIT),
read per request, so a changed setting applies without a restart. Requests are counted in
fixed windows, one Redis counter per key and window, shared by every process. The same
machinery counts failed authentications per client address under the scope `invalid_key`
(env KAIZEN_INVALID_KEY_RATE_LIMIT; apps/accounts/middleware.py).

A process does not ask Redis on every request: it takes a lease of several requests at once
(`INCRBY lease`, pipelined with the SET that opens the window's counter with its timeout)
and spends it locally until it is used up or the window ends. The lease is a fraction of the
limit (`LEASE_FRACTION`, at most `LEASE_MAX`, at least 1), so a key at 6,000/minute costs one
round trip per 60 requests, and a key at 3/minute one per request, exactly as before. What a
lease reserves is counted in Redis at once, so the processes together never let more than
the limit through in a window; the price is that tokens a process leased but did not spend
when the window ends are lost: a key spread over P processes may be refused up to
(P - 1) x lease requests before its limit (1 % per other process at most). When Redis
answers that the window is used up, the process refuses the key's requests without asking
again until the window ends.

DESIGN.md principle 4: Redis being down delays numbers and loses nothing, so the limiter lets
requests through; after a failure it stops asking Redis for a few seconds so that a dead
Redis costs no request a connect timeout.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from apps.accounts.authentication import KeyPrincipal

logger = logging.getLogger(__name__)

SCOPE = "api_key"
# Requests answered 401, per client address.
INVALID_KEY_SCOPE = "invalid_key"
RETRY_AFTER_FAILURE_SECONDS = 5.0
# A lease is this fraction of the limit, within [1, LEASE_MAX] requests. The cap binds only
# for limits over ~100,000 per window; below it a key spread over P processes may be refused
# up to (P - 1) % of its limit early. (At 64, a key allowed a million a minute still cost a
# Redis round trip every 64 requests: 5-8 µs a request on the assignment path.)
LEASE_FRACTION = 100
LEASE_MAX = 1024
# Keys with a lease held by this process; past this many, all are forgotten.
MAX_LEASES = 10_000
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_skip_until = 0.0
# The clock of the windows (seconds since the epoch); tests pin it.
clock = time.time


@dataclass
class _Lease:
    window: int
    remaining: int
    # Redis said the window is used up: refuse until it ends, without asking again.
    exhausted: bool = False


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int

    @property
    def lease(self) -> int:
        return max(1, min(LEASE_MAX, self.limit // LEASE_FRACTION))


_leases: dict[str, _Lease] = {}
# The other scopes' leases (failed authentications per address) are kept apart: addresses
# cost an attacker little (IPv6), and filling their table must never clear the keys' leases.
_other_leases: dict[str, _Lease] = {}
_rates: dict[str, Rate] = {}
_clients: dict[str, redis.Redis[bytes]] = {}


def leases_clear() -> None:
    """Forget this process's leases (as a new process would start)."""
    _leases.clear()
    _other_leases.clear()


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


def current_rate(scope: str = SCOPE) -> Rate | None:
    """The scope's configured limit, or None when there is none ("1000/minute" → 1000 per
    60 s)."""
    rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
    text = rates.get(scope)
    if text is None:
        return None
    text = str(text)
    rate = _rates.get(text)
    if rate is None:
        number, period = text.split("/")
        rate = Rate(limit=int(number), seconds=_PERIODS[period[0]])
        _rates[text] = rate
    return rate


def rate_limit_wait(prefix: str, scope: str = SCOPE) -> float | None:
    """None when `prefix` (an API key's prefix; for another scope, what that scope counts
    by) may make one more request now; else seconds to wait."""
    global _skip_until
    rate = current_rate(scope)
    if rate is None:
        return None
    now = clock()
    window = math.floor(now / rate.seconds)
    wait = (window + 1) * rate.seconds - now
    if scope == SCOPE:
        leases, name = _leases, prefix
    else:
        leases, name = _other_leases, f"{scope}:{prefix}"
    lease = leases.get(name)
    if lease is not None and lease.window == window:
        if lease.remaining > 0:
            lease.remaining -= 1
            return None
        if lease.exhausted:
            return wait
    if time.monotonic() < _skip_until:
        return None
    try:
        granted = _take(prefix, window, rate, scope)
    except Exception as error:  # noqa: BLE001 - any Redis failure: fail open, never 500
        _skip_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
        logger.warning("rate_limit.unavailable", extra={"error": type(error).__name__})
        return None
    if len(leases) >= MAX_LEASES and name not in leases:
        # Forget every lease (their unspent requests are lost, as at a window's end) rather
        # than evict one by one from the front of the dict, which scans its deleted slots.
        leases.clear()
    if granted <= 0:
        leases[name] = _Lease(window, 0, exhausted=True)
        return wait
    # This request spends one of the granted requests.
    leases[name] = _Lease(window, granted - 1, exhausted=granted < rate.lease)
    return None


def _take(prefix: str, window: int, rate: Rate, scope: str) -> int:
    """Reserve up to a lease of the window's requests in Redis; how many were granted."""
    # The counter outlives its window by a full window: an increment that races the expiry
    # never recreates it without a timeout. One round trip: open the counter with its
    # timeout if absent, then reserve. (SET NX EX + INCRBY rather than INCRBY + EXPIRE NX:
    # the embedded Redis is 6.2.)
    redis_key = cache.make_and_validate_key(f"throttle:{scope}:{prefix}:{window}")
    pipeline = _redis_client().pipeline(transaction=False)
    pipeline.set(redis_key, 0, ex=2 * rate.seconds, nx=True)
    pipeline.incrby(redis_key, rate.lease)
    _, count = pipeline.execute()
    over = int(count) - rate.limit
    return rate.lease - max(over, 0)


class ApiKeyRateThrottle(BaseThrottle):
    """DRF's throttle for every API view: `rate_limit_wait` per key; anonymous calls pass
    (they are refused by authentication before)."""

    _wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.user
        if not isinstance(principal, KeyPrincipal):
            return True
        self._wait = rate_limit_wait(principal.prefix)
        return self._wait is None

    def wait(self) -> float | None:
        """Seconds until the current window ends (DRF rounds it up for Retry-After)."""
        return self._wait
