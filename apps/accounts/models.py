"""Applications and their API keys (API.md "Conventions": random, shown once, SHA-256, scoped)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now


class Scope(models.TextChoices):
    INGEST = "ingest", "ingest: post events, ask for assignments"
    READ = "read", "read: results, performance, feeds"
    MANAGE = "manage", "manage: models, experiments, rules, jobs"


class Application(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="keys")
    name = models.CharField(max_length=100)
    # The public, non-secret part of the key; it finds the row without hashing every key.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    # SHA-256 of the whole key, hex: a 256-bit random key needs no slow password hash.
    digest = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices))
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    created_by = models.CharField(max_length=200, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scopes__contained_by=[scope.value for scope in Scope])
                & ~models.Q(scopes=[]),
                name="apikey_scopes_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.application.name}/{self.name} ({self.prefix}…)"

    def is_usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now
