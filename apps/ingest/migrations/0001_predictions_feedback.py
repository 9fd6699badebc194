"""The prediction and feedback event tables, immutable in PostgreSQL itself."""

import apps.events.models
import django.db.models.deletion
import django.db.models.functions.datetime
import uuid
from django.db import migrations, models

from apps.events.operations import make_immutable


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('events', '0001_event_log'),
        ('registry', '0001_models_versions_aliases'),
    ]

    operations = [
        migrations.CreateModel(
            name='Feedback',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('seq', models.BigIntegerField(db_default=apps.events.models.NextEventSeq(), editable=False)),
                ('xid', models.BigIntegerField(db_default=apps.events.models.CurrentTransactionId(), editable=False)),
                ('occurred_at', models.DateTimeField()),
                ('received_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), editable=False)),
                ('prediction_id', models.UUIDField()),
                ('metric', models.CharField(max_length=1024)),
                ('value', models.FloatField(blank=True, null=True)),
                ('label', models.CharField(blank=True, max_length=1024, null=True)),
                ('actor', models.CharField(max_length=200)),
                ('content_hash', models.BinaryField(max_length=16)),
            ],
            options={
                'verbose_name_plural': 'feedback',
                'abstract': False,
                'indexes': [models.Index(fields=['xid', 'seq'], name='feedback_xid_seq'), models.Index(fields=['prediction_id'], name='feedback_prediction')],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('label__isnull', True), ('value__isnull', False)), models.Q(('label__isnull', False), ('value__isnull', True)), _connector='OR'), name='feedback_value_or_label')],
            },
        ),
        migrations.CreateModel(
            name='Prediction',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('seq', models.BigIntegerField(db_default=apps.events.models.NextEventSeq(), editable=False)),
                ('xid', models.BigIntegerField(db_default=apps.events.models.CurrentTransactionId(), editable=False)),
                ('occurred_at', models.DateTimeField()),
                ('received_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now(), editable=False)),
                ('subject', models.CharField(blank=True, max_length=1024, null=True)),
                ('experiment', models.CharField(blank=True, max_length=1024, null=True)),
                ('variant', models.CharField(blank=True, max_length=1024, null=True)),
                ('attributes', models.JSONField(blank=True, null=True)),
                ('features', models.JSONField(blank=True, null=True)),
                ('output_label', models.CharField(blank=True, max_length=1024, null=True)),
                ('output_score', models.FloatField(blank=True, null=True)),
                ('output_value', models.FloatField(blank=True, null=True)),
                ('error', models.CharField(blank=True, max_length=1024, null=True)),
                ('explanation', models.JSONField(blank=True, null=True)),
                ('latency_ms', models.FloatField(blank=True, null=True)),
                ('actor', models.CharField(max_length=200)),
                ('content_hash', models.BinaryField(max_length=16)),
                ('model_version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='registry.modelversion')),
            ],
            options={
                'abstract': False,
                'indexes': [models.Index(fields=['xid', 'seq'], name='prediction_xid_seq')],
                'constraints': [models.CheckConstraint(condition=models.Q(('output_label__isnull', False), ('output_score__isnull', False), ('output_value__isnull', False), ('error__isnull', False), _connector='OR'), name='prediction_output_or_error'), models.CheckConstraint(condition=models.Q(models.Q(('experiment__isnull', True), ('variant__isnull', True)), models.Q(('experiment__isnull', False), ('subject__isnull', False), ('variant__isnull', False)), _connector='OR'), name='prediction_experiment_with_variant_and_subject')],
            },
        ),
        make_immutable('ingest_prediction'),
        make_immutable('ingest_feedback'),
    ]
