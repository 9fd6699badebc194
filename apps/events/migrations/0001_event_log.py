"""The log's global sequence and the trigger function that keeps event rows immutable."""

from django.db import migrations

from apps.events.operations import REJECT_FUNCTION


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.RunSQL(
            sql="CREATE SEQUENCE IF NOT EXISTS kaizen_event_seq AS bigint;",
            reverse_sql="DROP SEQUENCE IF EXISTS kaizen_event_seq;",
        ),
        migrations.RunSQL(
            sql=REJECT_FUNCTION,
            reverse_sql="DROP FUNCTION IF EXISTS kaizen_reject_mutation();",
        ),
    ]
