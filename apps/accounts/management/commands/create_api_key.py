"""`manage.py create_api_key --name NAME --scopes ingest,read,manage`: prints the key last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts import services
from apps.core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create an API key. The key is shown once, alone on the last line of output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="what the key is for")
        parser.add_argument("--scopes", required=True, help="comma-separated: ingest,read,manage")
        parser.add_argument(
            "--application", help="application the key belongs to (default: the name)"
        )
        parser.add_argument("--expires-in-days", type=int, help="expire the key after N days")

    def handle(self, *args: Any, **options: Any) -> None:
        expires_at = None
        if options["expires_in_days"] is not None:
            if options["expires_in_days"] <= 0:
                raise CommandError("--expires-in-days must be a positive number of days.")
            expires_at = datetime.now(UTC) + timedelta(days=options["expires_in_days"])
        try:
            key, raw = services.api_key_create(
                application=options["application"] or options["name"],
                name=options["name"],
                scopes=options["scopes"].split(","),
                expires_at=expires_at,
                actor="cli",
            )
        except ValidationFailed as error:
            raise CommandError(error.message) from error
        self.stdout.write(
            f"Created API key {key.prefix} for application {key.application.name} "
            f"with scopes {','.join(key.scopes)}. Store it now: it is not shown again."
        )
        self.stdout.write(raw)
