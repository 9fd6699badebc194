"""Views other apps read model facts and their changes through (apps/registry/selectors.py)."""

from django.db import migrations

VERSION_FACTS = """
CREATE VIEW registry_version_facts AS
SELECT v.id, v.model_id, m.task, m.positive_label, m.decision_threshold, m.segment_attributes
FROM registry_modelversion v JOIN registry_mlmodel m ON m.id = v.model_id
"""

MODEL_CHANGE_LOG = """
CREATE VIEW registry_model_change_log AS
SELECT id, xid, seq, occurred_at, received_at, model_id
FROM registry_registryevent WHERE type = 'model_updated'
"""


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_models_versions_aliases")]

    operations = [
        migrations.RunSQL(VERSION_FACTS, "DROP VIEW registry_version_facts"),
        migrations.RunSQL(MODEL_CHANGE_LOG, "DROP VIEW registry_model_change_log"),
    ]
