"""The PostgreSQL fixture: a real server that accepts connections, queries and new databases."""

from __future__ import annotations

import psycopg
import pytest

from tests.harness.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def test_postgres_accepts_a_connection_and_a_query(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn) as connection:
        row = connection.execute("SELECT 6 * 7, current_database()").fetchone()
    assert row == (42, "streamctl")
    assert postgres.url.startswith("postgresql+psycopg://")


def test_new_database_is_isolated(postgres: PostgresServer) -> None:
    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    dsn = first.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE marker (id int)")
        connection.execute("INSERT INTO marker VALUES (1)")
        assert connection.execute("SELECT count(*) FROM marker").fetchone() == (1,)
    other = second.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(other) as connection:
        row = connection.execute("SELECT to_regclass('public.marker')").fetchone()
    assert row == (None,)
