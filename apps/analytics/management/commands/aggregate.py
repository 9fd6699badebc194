"""`manage.py aggregate [name ...]`: bring projections up to date now, then evaluate the rules."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.analytics import services
from apps.core.errors import NotFound


class Command(BaseCommand):
    help = "Fold every new event into the projections now (what the workers do on a schedule)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to fold (default: all)")
        parser.add_argument(
            "--chunk",
            type=int,
            default=None,
            help="events per transaction (default: sized to the measured fold rate)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        chunk: int | None = options["chunk"]
        if chunk is not None and chunk < 1:
            raise CommandError("--chunk must be at least 1.")

        def progress(name: str, total: int) -> None:
            self.stdout.write(f"{name}: {total:,} events folded")
            self.stdout.flush()

        def waiting(name: str) -> None:
            self.stdout.write(f"{name}: being folded by another process; waiting for it")
            self.stdout.flush()

        try:
            report = services.aggregations_run(
                chunk=chunk,
                names=options["names"] or None,
                progress=progress,
                wait_busy=True,
                on_wait=waiting,
            )
        except NotFound as error:
            raise CommandError(error.message) from error
        failing = False
        for name, figures in report["projections"].items():
            if figures["status"] == "up_to_date":
                self.stdout.write(
                    self.style.SUCCESS(f"{name}: up to date ({figures['folded']:,} new)")
                )
            else:
                failing = failing or figures["status"] == "failing"
                detail = f": {figures['error']}" if figures.get("error") else ""
                self.stdout.write(
                    self.style.ERROR(
                        f"{name}: {figures['status']} ({figures['folded']:,} new){detail}"
                    )
                )
        if failing:
            raise CommandError(
                "A projection is failing; see the error above, /readyz and the admin's "
                "projection health. It is retried automatically with backoff."
            )
