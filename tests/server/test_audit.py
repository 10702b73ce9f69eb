"""Audit log: every decision recorded, who may read it, JSON-lines export, retention."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamctl.server.retention import RetentionSettings, apply_retention
from streamctl.transcript.upload import UploadError, upload_spool
from tests.server.helpers import device_login
from tests.server.part2 import Api, ClientTransport, backend_url, grant_id, running_api, sqlite_url
from tests.server.test_transcripts import record_session

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Api:
    folder = tmp_path_factory.mktemp("server")
    with running_api(folder, backend_url(request, folder)) as api:
        api.folder = folder  # type: ignore[attr-defined]
        yield api  # type: ignore[misc]


def kinds(api: Api, user: str = "erin", **params: str) -> list[tuple[str, str, str]]:
    events = api.get(user, "/v1/audit/events", params=params).json()["events"]
    return [(e["kind"], e["subject"], e["outcome"]) for e in events]


def test_every_decision_is_audited_and_exported(api: Api, tmp_path: Path) -> None:
    from streamctl.server.device_flow import hash_password  # noqa: F401  (users already exist)

    refused_login = api.client.post(
        "/device", data={"user_code": "XXXX-XXXX", "username": "alice", "password": "wrong",
                         "action": "approve"})
    assert refused_login.status_code in (400, 401, 403, 404)
    gid = grant_id(api)
    assert api.grant("alice", ["payments"], ["write"]).status_code == 403
    ap = api.approval().json()
    api.review("bob", ap["id"])
    rec = record_session(tmp_path / "spool", gid)
    upload_spool(rec.path, ClientTransport(api, "alice"))
    bad = record_session(tmp_path / "spool", gid)
    events = bad.path.read_text().splitlines()
    bad.path.write_text("\n".join(events[:3] + events[4:]) + "\n")
    with pytest.raises(UploadError):
        upload_spool(bad.path, ClientTransport(api, "alice"))

    seen = kinds(api)
    for expected in [("grant", "alice", "issued"), ("grant", "alice", "refused"),
                     ("approval.create", "alice", "created"),
                     ("approval.review", "bob", "approve"),
                     ("transcript.store", "alice", "stored"),
                     ("transcript.store", "alice", "refused")]:
        assert expected in seen, expected
    # Non-auditors see only what is about themselves.
    assert {s for _, s, _ in kinds(api, "bob")} == {"bob"}
    assert kinds(api, "erin", subject="bob") == [k for k in seen if k[1] == "bob"]
    ids = [e["id"] for e in api.get("erin", "/v1/audit/events").json()["events"]]
    assert ids == sorted(ids)

    config = api.folder / "server.yaml"  # type: ignore[attr-defined]
    exe = Path(sys.executable).parent / "streamctl"  # the installed console script
    out = subprocess.run([str(exe), "server", "audit-export", "--config", str(config)],
                         capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(e["kind"], e["subject"], e["outcome"]) for e in lines][: len(seen)] == seen
    assert all(set(e) == {"id", "ts", "kind", "subject", "outcome", "detail"} for e in lines)
    assert "wrong" not in out.stdout  # no password, token or secret in the log
    assert "Bearer" not in out.stdout and "eyJ" not in out.stdout


def test_device_login_is_audited(tmp_path: Path) -> None:
    from tests.server.conftest import open_api

    gen = open_api(tmp_path / "server", sqlite_url(tmp_path))
    server = next(gen)
    try:
        device_login(server.client, "alice", server.passwords["alice"])
        from streamctl.server.audit import query_audit

        with server.client.app.state.server.store.session() as session:  # type: ignore[attr-defined]
            rows = [(r.kind, r.subject, r.outcome) for r in query_audit(session, kind="login")]
        assert ("login", "alice", "issued") in rows
    finally:
        gen.close()


def test_retention_deletes_old_data_and_audits_it(api: Api, tmp_path: Path) -> None:
    gid = grant_id(api)
    rec = record_session(tmp_path / "spool", gid)
    upload_spool(rec.path, ClientTransport(api, "alice"))
    store = api.state.store
    keep = apply_retention(store, RetentionSettings(transcripts_seconds=3600, audit_seconds=3600))
    assert keep.sessions == 0 and keep.audit_events == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    gone = apply_retention(store, RetentionSettings(transcripts_seconds=3600, audit_seconds=3600),
                           now=later)
    assert gone.sessions >= 1 and gone.audit_events >= 1
    assert api.get("alice", f"/v1/sessions/{rec.session_id}").status_code == 404
    remaining = api.get("erin", "/v1/audit/events").json()["events"]
    assert [e["kind"] for e in remaining] == ["retention.delete"]
    detail = remaining[0]["detail"]
    assert detail["sessions"] == gone.sessions and detail["audit_events"] == gone.audit_events
    assert rec.session_id in detail["session_ids"]


def test_server_applies_retention_on_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "server"
    retention = {"transcripts_seconds": 1, "interval_seconds": 0.2}
    with running_api(folder, sqlite_url(folder), retention=retention) as api:
        gid = grant_id(api)
        rec = record_session(tmp_path / "spool", gid)
        upload_spool(rec.path, ClientTransport(api, "alice"))
        deadline = time.monotonic() + 30
        while api.get("alice", f"/v1/sessions/{rec.session_id}").status_code != 404:
            assert time.monotonic() < deadline, "retention did not run"
            time.sleep(0.1)
        assert ("retention.delete", "streamctl-server", "deleted") in kinds(api)
