"""Migrations on SQLite and PostgreSQL: from empty, idempotent, safe when servers start together."""

from __future__ import annotations

import threading

from sqlalchemy import inspect, text

from streamctl.server.store import Store


def test_concurrent_migrations_end_at_the_head_once(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(3)]
    errors: list[BaseException] = []

    def migrate(store: Store) -> None:
        try:
            store.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    stores[0].migrate()  # again: a no-op
    tables = set(inspect(stores[0].engine).get_table_names())
    assert {"device_authorizations", "refresh_tokens", "grants", "throttles"} <= tables
    with stores[0].engine.connect() as conn:
        versions = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    assert len(versions) == 1 and versions[0] >= "0001"
    for s in stores:
        s.dispose()
