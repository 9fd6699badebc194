"""`manage.py aggregate [name ...]`: bring projections up to date now, then evaluate the rules."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.analytics import services
from apps.analytics.projections.base import DEFAULT_CHUNK
from apps.core.errors import NotFound


class Command(BaseCommand):
    help = "Fold every new event into the projections now (what the workers do on a schedule)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to fold (default: all)")
        parser.add_argument(
            "--chunk",
            type=int,
            default=DEFAULT_CHUNK,
            help=f"events per transaction (default {DEFAULT_CHUNK:,})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        chunk: int = options["chunk"]
        if chunk < 1:
            raise CommandError("--chunk must be at least 1.")

        def progress(name: str, total: int) -> None:
            self.stdout.write(f"{name}: {total:,} events folded")
            self.stdout.flush()

        try:
            report = services.aggregations_run(
                chunk=chunk, names=options["names"] or None, progress=progress
            )
        except NotFound as error:
            raise CommandError(error.message) from error
        for name, figures in report["projections"].items():
            self.stdout.write(self.style.SUCCESS(f"{name}: up to date ({figures['folded']:,} new)"))
