"""Configuration numbers from a sequence: a number is never reused, even after a rollback.

A counter (version + 1) could hand the same number to two different configurations when a
transaction that raised it rolls back; a process that cached the rolled-back one would then
take it for current. nextval() never repeats, so equal numbers mean equal configurations.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("experiments", "0001_experiments_variants_exposures_events")]

    operations = [
        migrations.RunSQL(
            sql="CREATE SEQUENCE IF NOT EXISTS experiments_config_seq AS bigint START 1;",
            reverse_sql="DROP SEQUENCE IF EXISTS experiments_config_seq;",
        ),
    ]
