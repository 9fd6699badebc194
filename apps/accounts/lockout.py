"""The page a locked-out admin login gets (django-axes' AXES_LOCKOUT_CALLABLE)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """429 with an HTML page in the admin's look, saying for how long; with Retry-After when
    the lockout ends by itself. The same for XMLHttpRequests (axes would answer JSON)."""
    cool_off: timedelta | None = get_cool_off(request)
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        **admin.site.each_context(request),
        "title": "Login locked",
        "username": str(username),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": None if cool_off is None else math.ceil(cool_off.total_seconds() / 60),
    }
    response = TemplateResponse(request, "accounts/admin_lockout.html", context, status=429)
    if cool_off is not None:
        response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response.render()
