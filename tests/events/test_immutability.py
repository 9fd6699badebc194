"""Events are insert-only: PostgreSQL's trigger, the ORM, PROTECT foreign keys, the registry."""

from __future__ import annotations

import psycopg
import pytest
from django.apps import apps
from django.db import DatabaseError, connection, models, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import CreateModel
from django.db.models import ProtectedError

from apps.events import registry
from apps.events.models import Event, ImmutableEventError
from apps.registry.models import MLModel, RegistryEvent
from tests.events.factories import ml_model, registry_event


def _event_models() -> list[type[Event]]:
    return [
        model
        for model in apps.get_models()
        if issubclass(model, Event) and not model._meta.proxy and model._meta.managed
    ]


def _snapshot(event: RegistryEvent) -> tuple[object, ...]:
    return tuple(
        RegistryEvent.objects.filter(pk=event.pk).values_list(
            "id", "seq", "xid", "occurred_at", "received_at", "type", "actor", "state", "model"
        )
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE registry_registryevent SET actor = 'mallory' WHERE id = %s",
        "UPDATE registry_registryevent SET seq = seq + 1000 WHERE id = %s",
        "UPDATE registry_registryevent SET state = '{}'::jsonb WHERE id = %s",
        "DELETE FROM registry_registryevent WHERE id = %s",
    ],
    ids=["update-actor", "update-seq", "update-state", "delete"],
)
def test_raw_sql__update_or_delete_of_event__trigger_refuses_and_row_unchanged(statement):
    # Given
    event = registry_event(model=ml_model())
    before = _snapshot(event)
    # When
    with pytest.raises(DatabaseError) as raised, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement, [event.pk])
    # Then: the refusal is PostgreSQL's, from the trigger
    assert isinstance(raised.value.__cause__, psycopg.errors.InsufficientPrivilege)
    assert "events are immutable" in str(raised.value)
    assert "registry_registryevent" in str(raised.value)
    assert _snapshot(event) == before


@pytest.mark.django_db
def test_raw_sql__update_of_every_row__refused_and_nothing_changed():
    # Given
    model = ml_model()
    events = [registry_event(model=model) for _ in range(3)]
    before = [_snapshot(event) for event in events]
    # When
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE registry_registryevent SET actor = 'mallory'")
    # Then
    assert [_snapshot(event) for event in events] == before


@pytest.mark.django_db
def test_orm_save__stored_event__raises_immutable_and_row_unchanged():
    # Given
    event = registry_event(model=ml_model(), actor="alice")
    before = _snapshot(event)
    event.actor = "mallory"
    # When / Then
    with pytest.raises(ImmutableEventError):
        event.save()
    assert _snapshot(event) == before


@pytest.mark.django_db
def test_orm_save__event_read_back_from_database__raises_immutable():
    # Given: a row loaded from the table (not the instance that inserted it)
    stored = RegistryEvent.objects.get(pk=registry_event(model=ml_model()).pk)
    # When / Then
    with pytest.raises(ImmutableEventError):
        stored.save(update_fields=["actor"])


@pytest.mark.django_db
def test_orm_delete__stored_event__raises_immutable_and_row_kept():
    # Given
    event = registry_event(model=ml_model())
    # When / Then
    with pytest.raises(ImmutableEventError):
        event.delete()
    assert RegistryEvent.objects.filter(pk=event.pk).count() == 1


@pytest.mark.django_db
def test_immutable_error__is_an_application_error__405_method_not_allowed():
    # Then: should a service let one escape, clients get API.md's 405, not a 500
    assert (ImmutableEventError.code, ImmutableEventError.status) == ("method_not_allowed", 405)


@pytest.mark.django_db
@pytest.mark.parametrize("operation", ["update", "delete", "bulk_update"])
def test_queryset_bulk_write__events__database_refuses_and_nothing_changed(operation):
    # Given: querysets bypass save()/delete(); the trigger still refuses
    model = ml_model()
    events = [registry_event(model=model) for _ in range(2)]
    before = [_snapshot(event) for event in events]
    rows = RegistryEvent.objects.filter(pk__in=[event.pk for event in events])
    # When
    with pytest.raises(DatabaseError), transaction.atomic():
        if operation == "update":
            rows.update(actor="mallory")
        elif operation == "delete":
            rows.delete()
        else:
            for event in events:
                event.actor = "mallory"
            RegistryEvent.objects.bulk_update(events, ["actor"])
    # Then
    assert [_snapshot(event) for event in events] == before


@pytest.mark.django_db
def test_delete_parent__model_referenced_by_events__protected_error_and_nothing_deleted():
    # Given
    model = ml_model()
    event = registry_event(model=model)
    # When / Then
    with pytest.raises(ProtectedError), transaction.atomic():
        model.delete()
    assert MLModel.objects.filter(pk=model.pk).count() == 1
    assert RegistryEvent.objects.filter(pk=event.pk).count() == 1


@pytest.mark.django_db
def test_migrations__every_event_table__has_the_immutability_trigger():
    # Given: every concrete event table of every app
    tables = sorted(model._meta.db_table for model in _event_models())
    assert "registry_registryevent" in tables
    # When
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE t.tgname = c.relname || '_immutable' AND t.tgenabled = 'O'
              AND NOT t.tgisinternal
            """
        )
        guarded = {row[0] for row in cursor.fetchall()}
    # Then
    assert [table for table in tables if table not in guarded] == []


def _foreign_keys_touching_events() -> list[tuple[str, models.ForeignKey[object, object]]]:
    found = []
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if not isinstance(field, models.ForeignKey):
                continue
            related = field.related_model
            if issubclass(model, Event) or (
                isinstance(related, type) and issubclass(related, Event)
            ):
                found.append((f"{model._meta.label}.{field.name}", field))
    return found


def test_models__foreign_keys_from_or_to_event_tables__are_protect():
    # Given: CASCADE or SET_NULL would try to delete/update an event and meet the trigger
    keys = _foreign_keys_touching_events()
    assert "registry.RegistryEvent.model" in {name for name, _ in keys}
    # Then
    assert [
        name for name, field in keys if field.remote_field.on_delete is not models.PROTECT
    ] == []


def test_registry__every_event_table__is_registered_in_the_feed():
    # Given
    registered = {source.model for source in registry.sources()}
    # Then: an event table missing here would be missing from GET /api/v1/events
    assert sorted(model._meta.label for model in _event_models() if model not in registered) == []


def _creating_migration(loader: MigrationLoader, model: type[Event]) -> tuple[str, str]:
    label = model._meta.app_label
    for (app_label, name), migration in loader.disk_migrations.items():
        if app_label != label:
            continue
        for operation in migration.operations:
            if (
                isinstance(operation, CreateModel)
                and operation.name_lower == model._meta.model_name
            ):
                return app_label, name
    pytest.fail(f"no migration creates {model._meta.label}")


def test_migrations__every_event_table__created_after_the_log_sequence_and_trigger_function():
    # Given: an event table's column default calls the log's sequence and its trigger calls
    # the log's function; both come from events 0001, which must therefore run first even
    # when that app alone is migrated
    loader = MigrationLoader(None, ignore_no_migrations=True)
    # When
    missing = [
        model._meta.label
        for model in _event_models()
        if ("events", "0001_event_log")
        not in loader.graph.forwards_plan(_creating_migration(loader, model))
    ]
    # Then
    assert missing == []
