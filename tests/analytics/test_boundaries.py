"""The analytics app reads other apps' rows only through their selectors and the views they
own (DESIGN.md "Apps"), never by naming their tables in its own SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ANALYTICS = Path(__file__).resolve().parents[2] / "apps" / "analytics"
OTHER_APPS_TABLES = re.compile(
    r"\b(?:ingest|experiments|registry|monitoring|accounts)_(?!selectors\b|services\b)[a-z]+\b"
)


@pytest.mark.parametrize(
    "module",
    sorted(
        str(path.relative_to(ANALYTICS))
        for path in ANALYTICS.rglob("*.py")
        if "migrations" not in path.parts
    ),
)
def test_analytics_module__sql__names_no_table_of_another_app(module):
    source = (ANALYTICS / module).read_text()
    assert OTHER_APPS_TABLES.findall(source) == []
