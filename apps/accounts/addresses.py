"""The client address of a request, for limits kept per address (invalid keys, admin login).

By default it is REMOTE_ADDR: the peer of the TCP connection, which a client cannot forge.
Behind reverse proxies every request comes from a proxy, so one address would stand for
all clients; with KAIZEN_TRUSTED_PROXY_COUNT = n, the client is the n-th address from the
right of X-Forwarded-For (each trusted proxy appends the address it saw; what a client put
in the header itself stays to the left and is never used). A request with fewer entries
than that, or an entry that is not an IP address, falls back to REMOTE_ADDR.

Limits count an IPv6 address as its /64 network, written as the network's first address
(2001:db8:1:2:aaaa::1 counts as 2001:db8:1:2::): one subscriber or one LAN gets a /64,
from which an attacker could draw a new address for every request.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The client's address ('' when the server gives none, e.g. over a Unix socket)."""
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


def counted_address(address: str) -> str:
    """What a limit counts `address` as: an IPv6 address as its /64's first address, an
    IPv4 one (also when IPv4-mapped) and anything else as itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False).network_address)
    return str(ip)


def limited_address(request: HttpRequest) -> str:
    """The address the invalid-key throttle and the admin lockout keep their counts for."""
    return counted_address(client_address(request))
