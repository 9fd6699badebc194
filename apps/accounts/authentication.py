"""DRF authentication by `Authorization: Bearer <api key>`."""

from __future__ import annotations

from dataclasses import dataclass, field

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from apps.accounts import services
from apps.accounts.models import ApiKey


@dataclass(frozen=True)
class KeyPrincipal:
    """Who is calling: the key's application, for request.user and the actor of events."""

    key_id: int
    prefix: str
    application: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    is_authenticated: bool = True

    @property
    def actor(self) -> str:
        return f"api_key:{self.application}/{self.prefix}"


def authenticate_bearer(header: bytes) -> tuple[KeyPrincipal, ApiKey] | None:
    """The caller of an Authorization header's value (DRF's `get_authorization_header`):
    None when there is none, else the key's principal or AuthenticationFailed. For DRF
    views and plain ones alike."""
    parts = header.split()
    if not parts:
        return None
    if parts[0].lower() != b"bearer" or len(parts) != 2:
        raise AuthenticationFailed("Send the API key as 'Authorization: Bearer <key>'.")
    try:
        raw = parts[1].decode("ascii")
    except UnicodeError as error:
        raise AuthenticationFailed("Unknown API key.") from error
    key = services.api_key_authenticate(raw)
    if key is None:
        raise AuthenticationFailed("Unknown, revoked or expired API key.")
    return _principal(key), key


# The key cache (services) hands out the same ApiKey instance until it looks the key up
# again, and a principal is made of that instance's fields alone: it is kept on the instance,
# built once per instance instead of per request, and gone with it.
_PRINCIPAL = "_kaizen_principal"


def _principal(key: ApiKey) -> KeyPrincipal:
    principal: KeyPrincipal | None = getattr(key, _PRINCIPAL, None)
    if principal is None:
        principal = KeyPrincipal(
            key_id=key.pk,
            prefix=key.prefix,
            application=key.application.name,
            scopes=frozenset(key.scopes),
        )
        setattr(key, _PRINCIPAL, principal)
    return principal


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
        return authenticate_bearer(get_authorization_header(request))

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="kaizen"'
