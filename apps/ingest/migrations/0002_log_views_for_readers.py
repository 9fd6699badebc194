"""Views other apps read the ingestion log through (apps/ingest/selectors.py names them)."""

from django.db import migrations

PREDICTION_LOG = """
CREATE VIEW ingest_prediction_log AS
SELECT id, xid, seq, occurred_at, received_at, model_version_id, subject, experiment, variant,
       attributes, output_label, output_score, output_value, error, latency_ms
FROM ingest_prediction
"""

FEEDBACK_LOG = """
CREATE VIEW ingest_feedback_log AS
SELECT id, xid, seq, occurred_at, received_at, prediction_id, metric, value, label
FROM ingest_feedback
"""


class Migration(migrations.Migration):
    dependencies = [("ingest", "0001_predictions_feedback")]

    operations = [
        migrations.RunSQL(PREDICTION_LOG, "DROP VIEW ingest_prediction_log"),
        migrations.RunSQL(FEEDBACK_LOG, "DROP VIEW ingest_feedback_log"),
    ]
