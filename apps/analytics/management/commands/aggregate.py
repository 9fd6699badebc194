"""`manage.py aggregate`: bring every projection up to date now, then evaluate the rules."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.analytics import services


class Command(BaseCommand):
    help = "Fold every new event into the projections now (what the workers do on a schedule)."

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(name: str, total: int) -> None:
            self.stdout.write(f"{name}: {total:,} events folded")

        report = services.aggregations_run(progress=progress)
        for name, figures in report["projections"].items():
            self.stdout.write(self.style.SUCCESS(f"{name}: up to date ({figures['folded']:,} new)"))
