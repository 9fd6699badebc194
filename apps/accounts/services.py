"""Use cases of applications and API keys."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from apps.accounts.models import ApiKey, Application, Scope
from apps.core.errors import ValidationFailed

logger = logging.getLogger(__name__)

KEY_PREFIX = "kz"
PREFIX_LENGTH = 12  # hex characters of the public lookup prefix (48 bits)
SECRET_BYTES = 32  # 256 random bits in the secret part (API.md "Conventions")
NAME_MAX_LENGTH = 100


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = [scope.strip() for scope in scopes if scope.strip()]
    known = {scope.value for scope in Scope}
    unknown = sorted(set(wanted) - known)
    if unknown or not wanted:
        raise ValidationFailed(
            f"Scopes must be among {', '.join(sorted(known))}; got {', '.join(unknown) or 'none'}.",
            details=[{"field": "scopes", "message": "ingest, read and/or manage"}],
        )
    return sorted(set(wanted))


def _check_names(*, application: str, name: str) -> None:
    details = [
        {"field": field, "message": f"1 to {NAME_MAX_LENGTH} characters."}
        for field, value in (("application", application), ("name", name))
        if not value.strip() or len(value) > NAME_MAX_LENGTH
    ]
    if details:
        raise ValidationFailed("The application and key names are invalid.", details=details)


@transaction.atomic
def api_key_create(
    *,
    application: str,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    actor: str = "",
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    scope_list = parse_scopes(scopes)
    _check_names(application=application, name=name)
    app, _ = Application.objects.get_or_create(name=application)
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    key = ApiKey.objects.create(
        application=app,
        name=name,
        prefix=prefix,
        digest=_digest(raw_key),
        scopes=scope_list,
        expires_at=expires_at,
        created_by=actor,
    )
    logger.info("api_key.created", extra={"api_key": prefix, "scopes": scope_list})
    return key, raw_key


# Authenticated keys cached per process, by digest: ingestion and assignment would otherwise
# spend a database round trip per request on the key. Expiry is checked on every use; a
# revocation is seen at once by the process that made it and within
# KAIZEN_API_KEY_CACHE_SECONDS by every other process.
_key_cache: dict[str, tuple[float, ApiKey]] = {}
KEY_CACHE_MAX_ENTRIES = 10_000


def api_key_cache_clear() -> None:
    _key_cache.clear()


def api_key_revoke(*, key: ApiKey, at: datetime | None = None) -> ApiKey:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=at or datetime.now(UTC)
    )
    api_key_cache_clear()
    key.refresh_from_db()
    logger.info("api_key.revoked", extra={"api_key": key.prefix})
    return key


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The usable key this raw key is, or None (unknown, malformed, revoked or expired)."""
    # The secret is base64url, whose alphabet contains "_": split off the two leading parts only.
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != PREFIX_LENGTH:
        return None
    digest = _digest(raw_key)
    now = datetime.now(UTC)
    cached = _key_cache.get(digest)
    if cached is not None and cached[0] > time.monotonic():
        key: ApiKey | None = cached[1]
    else:
        key = ApiKey.objects.select_related("application").filter(prefix=parts[1]).first()
        if key is None or not hmac.compare_digest(key.digest, digest):
            return None
        _remember(digest, key)
    assert key is not None  # noqa: S101 - both branches above leave a key
    if not key.is_usable(now):
        return None
    return key


def _remember(digest: str, key: ApiKey) -> None:
    seconds: float = settings.KAIZEN_API_KEY_CACHE_SECONDS
    if seconds <= 0:
        return
    if len(_key_cache) >= KEY_CACHE_MAX_ENTRIES:
        _key_cache.clear()
    _key_cache[digest] = (time.monotonic() + seconds, key)
