"""Middleware of accounts: failed API authentication throttled per client address, and the
admin login's lockout page.

Every request answered 401 (no key, an unknown, revoked or expired one, a malformed
Authorization header, a wrong metrics token) is counted against its client address (an
IPv6 one by its /64; apps/accounts/addresses.py) with the per-key limiter's machinery
(apps/accounts/throttling.py: fixed windows in Redis, shared by every process; failing
open when Redis is down). Past the limit `invalid_key` of DEFAULT_THROTTLE_RATES (env
KAIZEN_INVALID_KEY_RATE_LIMIT) such a request is answered 429 `throttled` with Retry-After
instead, until the window ends.

Only failures count and only failures are refused: a valid key sent from the same address
is answered as usual, and successful requests never reach Redis here. Telling a bad key
from a good one takes the key lookup the request would make anyway, so a throttled
address still costs that one indexed query per request; what the limit bounds is how fast
one address can try keys and how many 401s it is sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from axes.helpers import get_lockout_response
from django.http import HttpRequest, HttpResponse

from apps.accounts import throttling
from apps.accounts.addresses import limited_address
from apps.core.errors import json_error

Handler = Callable[[HttpRequest], HttpResponse]


class FailedAuthenticationThrottleMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 401:
            return response
        wait = throttling.rate_limit_wait(
            limited_address(request), scope=throttling.INVALID_KEY_SCOPE
        )
        if wait is None:
            return response
        seconds = max(1, math.ceil(wait))
        return json_error(
            429,
            "throttled",
            "Too many requests with a missing or invalid API key from this address; "
            f"retry in {seconds} s.",
            Retry_After=str(seconds),
        )


class AdminLockoutMiddleware:
    """django-axes' AxesMiddleware, sync only: a login attempt that axes refused (a locked-out
    username+address) gets the lockout page (apps/accounts/lockout.py).

    Axes' own class asks on every request whether it runs in an async stack, ~1 µs each
    (measured) on every API request; Kaizen is served over WSGI, so this one does not ask.
    """

    async_capable = False

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(request, "axes_locked_out", False):
            credentials = getattr(request, "axes_credentials", None)
            locked: HttpResponse = get_lockout_response(request, response, credentials)
            return locked
        return response
