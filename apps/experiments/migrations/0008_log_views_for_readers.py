"""Views other apps read exposures and experiment facts through (apps/experiments/selectors.py)."""

from django.db import migrations

EXPOSURE_LOG = """
CREATE VIEW experiments_exposure_log AS
SELECT id, xid, seq, occurred_at, received_at, experiment_id, subject, variant, attributes
FROM experiments_exposure
"""

EXPERIMENT_FACTS = """
CREATE VIEW experiments_experiment_facts AS
SELECT id, key, breakdown_attributes FROM experiments_experiment
"""

METRIC_FACTS = """
CREATE VIEW experiments_metric_facts AS
SELECT experiment_id, key, type FROM experiments_experimentmetric
"""


class Migration(migrations.Migration):
    dependencies = [("experiments", "0007_exposure_experiment_without_row_lock")]

    operations = [
        migrations.RunSQL(EXPOSURE_LOG, "DROP VIEW experiments_exposure_log"),
        migrations.RunSQL(EXPERIMENT_FACTS, "DROP VIEW experiments_experiment_facts"),
        migrations.RunSQL(METRIC_FACTS, "DROP VIEW experiments_metric_facts"),
    ]
