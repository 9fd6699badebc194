"""`manage.py rebuild_projections [name ...]`: recompute projections from the event log."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.analytics import services
from apps.analytics.projections.base import projections
from apps.core.errors import NotFound


class Command(BaseCommand):
    help = (
        "Throw projections away and fold the whole event log again (chunked transactions). "
        "The numbers equal what the incremental runs gave."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to rebuild (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        names = options["names"] or [projection.name for projection in projections()]
        for name in names:
            self._rebuild(name)

    def _rebuild(self, name: str) -> None:
        from django.db import connection

        total = 0
        projection = next((p for p in projections() if p.name == name), None)
        if projection is not None:
            with connection.cursor() as cursor:
                for source in projection.sources:
                    cursor.execute(f"SELECT count(*) FROM {source}")  # noqa: S608 - relation names of the apps' selectors
                    row = cursor.fetchone()
                    total += int(row[0]) if row else 0
        started = time.monotonic()

        def progress(projection_name: str, folded: int) -> None:
            share = f" ({100 * folded / total:5.1f}%)" if total else ""
            rate = folded / max(time.monotonic() - started, 1e-9)
            self.stdout.write(
                f"{projection_name}: {folded:,}/{total:,} events{share}, {rate:,.0f} events/s"
            )

        try:
            folded = services.projection_rebuild(name=name, progress=progress)
        except NotFound as error:
            raise CommandError(error.message) from error
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(f"{name}: rebuilt from {folded:,} events in {elapsed:.1f} s")
        )
