"""Scope checks, deny by default: a view lists the scope each of its methods needs."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.accounts.authentication import KeyPrincipal


class HasScope(BasePermission):
    """`view.scopes = {"GET": "read", "POST": "manage"}`; a method not listed is refused.

    HEAD and OPTIONS need what GET needs. A method the view does not implement passes here
    so that DRF answers 405, not 403.
    """

    message = "This API key lacks the scope this request needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        return has_scope(request.user, view, request.method or "")


def has_scope(principal: object, view: Any, method: str) -> bool:
    """HasScope's rule, for views that authenticate without a DRF request."""
    if not isinstance(principal, KeyPrincipal):
        return False
    if not hasattr(view, method.lower()):
        return True
    scopes: dict[str, str] = getattr(view, "scopes", {})
    needed = scopes.get("GET" if method in {"HEAD", "OPTIONS"} else method)
    return needed is not None and needed in principal.scopes


def actor_of(request: Request) -> str:
    """The actor recorded on events a request causes."""
    principal = request.user
    if isinstance(principal, KeyPrincipal):
        return principal.actor
    return "anonymous"
