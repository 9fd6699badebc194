"""fetchone_prepared: hot-path statements prepared once per connection, run by libpq."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.utils import DataError, ProgrammingError

from apps.core.db import fetchone_prepared

pytestmark = pytest.mark.django_db

ROUND_TRIP = "SELECT %s::bigint, %s::text, %s::jsonb, %s::boolean, %s::text, %s::smallint"


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements ORDER BY name")
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def unprepared() -> Iterator[None]:
    """The connection as DATABASE_PREPARED_STATEMENTS=false leaves it."""
    connection.ensure_connection()
    conn = connection.connection
    before = conn.prepare_threshold
    conn.prepare_threshold = None
    yield
    conn.prepare_threshold = before


def test_fetchone_prepared__values_of_each_type__come_back_as_sent():
    # Given values psycopg adapts to text: a 64-bit integer, non-ASCII text, JSON, a boolean,
    # NULL and a small integer
    sent = [2**40 + 3, "Zoë ✓", '{"country": "DE", "n": [1, 2]}', True, None, 7]
    # When
    row = fetchone_prepared(ROUND_TRIP, sent)
    # Then (Django reads jsonb as its text)
    assert row is not None
    assert row[0] == 2**40 + 3
    assert row[1] == "Zoë ✓"
    assert row[2] == '{"n": [1, 2], "country": "DE"}'
    assert row[3] is True
    assert row[4] is None
    assert row[5] == 7


def test_fetchone_prepared__named_placeholder_used_twice__one_parameter():
    row = fetchone_prepared("SELECT %(n)s::int + %(n)s::int, %(s)s::text", {"n": 20, "s": "x"})
    assert row == (40, "x")


def test_fetchone_prepared__no_row__none():
    assert fetchone_prepared("SELECT 1 WHERE %s::int > 1", [0]) is None


def test_fetchone_prepared__run_twice__prepared_once_per_connection():
    # When the same statement runs twice
    fetchone_prepared("SELECT %s::int + 1", [1])
    fetchone_prepared("SELECT %s::int + 1", [2])
    # Then the session holds one prepared statement for it
    assert _prepared_statements().count("SELECT $1::int + 1") == 1


@pytest.mark.django_db(transaction=True)
def test_fetchone_prepared__statement_deallocated_behind_its_back__prepared_again():
    # Given, in autocommit, a prepared statement that the session then drops (as DISCARD ALL
    # would)
    assert fetchone_prepared("SELECT %s::int * 2", [2]) == (4,)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    # When it runs again
    row = fetchone_prepared("SELECT %s::int * 2", [21])
    # Then it is prepared again and answers
    assert row == (42,)
    assert "SELECT $1::int * 2" in _prepared_statements()


def test_fetchone_prepared__deallocated_inside_a_transaction__error_then_prepared_again():
    # Given a statement dropped from the session while a transaction is open
    assert fetchone_prepared("SELECT %s::int * 3", [1]) == (3,)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    # When it runs inside a savepoint, the failure aborts that savepoint: it is raised
    with pytest.raises(ProgrammingError), transaction.atomic():
        fetchone_prepared("SELECT %s::int * 3", [2])
    # Then the next call prepares it again
    assert fetchone_prepared("SELECT %s::int * 3", [5]) == (15,)


def test_fetchone_prepared__prepared_statements_off__answers_without_preparing(unprepared):
    row = fetchone_prepared("SELECT %s::int - 1", [10])
    assert row == (9,)
    assert "SELECT $1::int - 1" not in _prepared_statements()


def test_fetchone_prepared__database_error__django_error_and_connection_still_usable():
    # Given a table with a unique key
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE once (k text PRIMARY KEY)")
    insert = "INSERT INTO once (k) VALUES (%s) RETURNING k"
    assert fetchone_prepared(insert, ["a"]) == ("a",)
    # When a statement breaks it, inside a savepoint
    with pytest.raises(IntegrityError), transaction.atomic():
        fetchone_prepared(insert, ["a"])
    # Then the error is Django's and the connection goes on
    assert fetchone_prepared(insert, ["b"]) == ("b",)


def test_fetchone_prepared__nul_in_text__data_error_before_sending():
    with pytest.raises(DataError), transaction.atomic():
        fetchone_prepared("SELECT %s::text", ["a\x00b"])


def test_fetchone_prepared__mixed_placeholders__refused():
    with pytest.raises(ValueError, match="either"):
        fetchone_prepared("SELECT %s::int, %(n)s::int", [1])


def test_fetchone_prepared__parameters_of_the_other_kind__refused():
    with pytest.raises(TypeError, match="mapping"):
        fetchone_prepared("SELECT %(n)s::int", [1])
    with pytest.raises(TypeError, match="sequence"):
        fetchone_prepared("SELECT %s::int", {"n": 1})


@pytest.mark.django_db(transaction=True)
def test_fetchone_prepared__server_ends_the_session__error_then_a_new_connection_answers():
    # Given a connection that has prepared a statement
    assert fetchone_prepared("SELECT %s::int + 2", [1]) == (3,)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    # When the server ends its session (a restart, an administrator)
    with psycopg.connect(_server_url(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # Then the next statement fails with Django's error, as through any cursor
    with pytest.raises(DatabaseError):
        fetchone_prepared("SELECT %s::int + 2", [1])
    # And once Django has let the broken connection go (at the request's end), the
    # statement is prepared on the new one and answers
    connection.close_if_unusable_or_obsolete()
    assert fetchone_prepared("SELECT %s::int + 2", [2]) == (4,)


def _server_url() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        host=params.get("host", ""),
        port=params.get("port", ""),
        user=params.get("user", ""),
        dbname=connection.settings_dict["NAME"],
    )


def test_fetchone_prepared__counts_as_a_query(django_assert_num_queries):
    with django_assert_num_queries(1) as captured:
        fetchone_prepared("SELECT %s::int", [5])
    assert "SELECT %s::int" in captured.captured_queries[0]["sql"]
