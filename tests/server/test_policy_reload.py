"""A running server picks up policy edits; a broken edit keeps the last good policy."""

from __future__ import annotations

import os
import time

from tests.server.conftest import ApiServer


def _touch_later(path: os.PathLike[str], text: str) -> None:
    """Write and move the mtime forward, so a reload is seen even on coarse clocks."""
    with open(path, "w") as out:
        out.write(text)
    stamp = time.time() + 2
    os.utime(path, (stamp, stamp))


def test_policy_reload(sqlite_api: ApiServer) -> None:
    api = sqlite_api
    alice = api.as_user("alice")
    assert api.grant(alice, topics=["orders"], operations=["write"]).status_code == 403
    path = api.config.policy_file
    original = path.read_text()
    widened = original.replace(
        '      - topics: ["orders", "orders.*"]\n        operations: [read, describe]',
        '      - topics: ["orders", "orders.*"]\n        operations: [read, write, describe]',
        1,
    )
    assert widened != original
    _touch_later(path, widened)
    assert api.grant(alice, topics=["orders"], operations=["write"]).status_code == 201
    _touch_later(path, widened.replace("roles:", "rolez:", 1))
    # broken: the last good policy stays in force, and the error is kept for operators
    assert api.grant(alice, topics=["orders"], operations=["write"]).status_code == 201
    state = api.client.app.state.server  # type: ignore[attr-defined]
    assert state.policy.last_error and "rolez" in state.policy.last_error
    _touch_later(path, original)
    assert api.grant(alice, topics=["orders"], operations=["write"]).status_code == 403
    assert state.policy.last_error is None


def test_reason_required_by_policy(sqlite_api: ApiServer) -> None:
    api = sqlite_api
    alice = api.as_user("alice")
    path = api.config.policy_file
    _touch_later(path, path.read_text().replace("reason_required: false", "reason_required: true"))
    refused = api.grant(alice, topics=["orders"], operations=["read"])
    assert refused.status_code == 403 and refused.json()["error"] == "reason_required"
    assert refused.json()["hint"] == 'add --reason "why you need it"'
    assert api.grant(alice, topics=["orders"], operations=["read"], reason="INC-42").status_code == 201
    listed = api.client.get("/v1/grants", headers=alice).json()
    assert listed[0]["reason"] == "INC-42"


def test_sqlite_store_runs_in_wal_mode(sqlite_api: ApiServer) -> None:
    from sqlalchemy import text

    state = sqlite_api.client.app.state.server  # type: ignore[attr-defined]
    with state.store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
