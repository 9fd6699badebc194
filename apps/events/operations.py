"""Migration operations that make a table part of the immutable log."""

from __future__ import annotations

from django.db import migrations

REJECT_FUNCTION = """
CREATE OR REPLACE FUNCTION kaizen_reject_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kaizen: % on % is not allowed: events are immutable', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def make_immutable(table: str) -> migrations.RunSQL:
    """A trigger that rejects every UPDATE and DELETE on `table`, whoever sends it."""
    trigger = f"{table}_immutable"
    return migrations.RunSQL(
        sql=(
            f'CREATE TRIGGER "{trigger}" BEFORE UPDATE OR DELETE ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION kaizen_reject_mutation();"
        ),
        reverse_sql=f'DROP TRIGGER IF EXISTS "{trigger}" ON "{table}";',
    )
