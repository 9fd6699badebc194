"""The client address of a request, for limits kept per address (invalid keys, admin login).

By default it is REMOTE_ADDR: the peer of the TCP connection, which a client cannot forge.
Behind reverse proxies every request comes from a proxy, so one address would stand for
all clients; with KAIZEN_TRUSTED_PROXY_COUNT = n, the client is the n-th address from the
right of X-Forwarded-For (each trusted proxy appends the address it saw; what a client put
in the header itself stays to the left and is never used). A request with fewer entries
than that, or an entry that is not an IP address, falls back to REMOTE_ADDR.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The address limits are kept for ('' when the server gives none, e.g. a Unix socket)."""
    peer = str(request.META.get("REMOTE_ADDR") or "")
    proxies: int = settings.KAIZEN_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return peer
    forwarded = [
        part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
    ]
    if len(forwarded) < proxies:
        return peer
    candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer
