"""Transcript store: upload in chunks, resume, idempotency, chain refusal, queries, who-produced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamctl.transcript.chain import event_hash, verify_chain
from streamctl.transcript.events import canonical_json, record_digest
from streamctl.transcript.recorder import TranscriptRecorder
from streamctl.transcript.spool import find_pending, read_spool
from streamctl.transcript.upload import UploadError, sync_pending, upload_spool
from tests.server.part2 import Api, ClientTransport, backend_url, grant_id, running_api
from tests.transcript.helpers import Summary, Verdict, batch_bytes, fetched_partition


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Api:
    """One server per module and backend (tests use fresh ids, so they do not collide)."""
    folder = tmp_path_factory.mktemp("server")
    with running_api(folder, backend_url(request, folder)) as api:
        yield api  # type: ignore[misc]


def record_session(spool: Path, gid: str, *, subject: str = "alice", produced: int = 30,
                   session_id: str | None = None, seal: bool = True) -> TranscriptRecorder:
    """A realistic session: produce records at offsets 100.., consume them, one refusal."""
    rec = TranscriptRecorder(spool, subject=subject, grant_id=gid, session_id=session_id,
                             background_sync=False)
    values = [(b"k%d" % i, b'{"n": %d, "secret": "hunter2"}' % i) for i in range(produced)]
    for i in range(0, produced, 10):
        rec.on_request("c1", Summary(correlation_id=i, client_id="rdkafka"), Verdict())
        rec.on_produced("c1", "orders", 0, batch_bytes(values[i:i + 10]), 100 + i, 0)
    rec.on_request("c2", Summary(kind="read", api_key=1, client_id="kafka-python"), Verdict())
    rec.on_fetched("c2", "orders", fetched_partition(batch_bytes(values, base_offset=100)), {})
    rec.on_request("c2", Summary(kind="delete", api_key=20, topics=("audit-events",)),
                   Verdict(False, 29, "audit-events is immutable"))
    rec.on_close("c1", "client closed")
    if seal:
        rec.seal("closed")
    else:
        rec.abandon()
    return rec


def test_upload_query_and_who_produced(api: Api, tmp_path: Path) -> None:
    gid = grant_id(api)
    rec = record_session(tmp_path / "spool", gid)
    events = read_spool(rec.path)
    result = upload_spool(rec.path, ClientTransport(api, "alice"), chunk_size=4)
    assert result.events == len(events) and result.sealed and result.resumed_from == 0
    assert not rec.path.exists()  # removed once the server has it all

    info = api.get("alice", f"/v1/sessions/{rec.session_id}").json()
    assert info["status"] == "sealed" and info["verified"] is True
    assert info["subject"] == "alice" and info["grant_id"] == gid
    assert info["counts"]["produced_records"] == 30 and info["counts"]["refused"] == 1
    assert info["topics"] == ["audit-events", "orders"]
    stored = api.get("alice", f"/v1/sessions/{rec.session_id}/events").json()["events"]
    assert [canonical_json(e) for e in stored] == [canonical_json(e) for e in events]
    refused = [e for e in stored if e.get("allowed") is False]
    assert refused[0]["reason"] == "audit-events is immutable"

    who = api.get("alice", "/v1/audit/produced",
                  params={"topic": "orders", "partition": 0, "offset": 117}).json()
    [match] = who["matches"]
    assert match["subject"] == "alice" and match["session_id"] == rec.session_id
    assert match["record_digest"] == record_digest(b"k17", b'{"n": 17, "secret": "hunter2"}')
    consumed = api.get("alice", "/v1/audit/consumed",
                       params={"topic": "orders", "partition": 0, "offset": 129}).json()
    assert [m["session_id"] for m in consumed["matches"]] == [rec.session_id]
    nothing = api.get("alice", "/v1/audit/produced",
                      params={"topic": "orders", "partition": 0, "offset": 130}).json()
    assert nothing["matches"] == []

    for query, found in (({"topic": "orders"}, True), ({"topic": "payments"}, False),
                         ({"subject": "alice"}, True), ({"since": "2999-01-01T00:00:00Z"}, False)):
        listed = api.get("alice", "/v1/sessions", params=query).json()["sessions"]
        assert (rec.session_id in [s["session_id"] for s in listed]) is found, query
    # Someone else sees neither the session nor the answer; an auditor sees both.
    assert api.get("dave", f"/v1/sessions/{rec.session_id}").status_code == 404
    assert api.get("dave", "/v1/audit/produced",
                   params={"topic": "orders", "partition": 0, "offset": 117}).json()["matches"] == []
    assert api.get("erin", f"/v1/sessions/{rec.session_id}").status_code == 200
    # No record value reached the server.
    raw = json.dumps(stored)
    assert "hunter2" not in raw and '"n": 17' not in raw


def test_chunk_uploaded_twice_is_stored_once(api: Api, tmp_path: Path) -> None:
    gid = grant_id(api)
    rec = record_session(tmp_path / "spool", gid)
    events = read_spool(rec.path)
    opened = api.post("alice", "/v1/sessions",
                      json={"session_id": rec.session_id, "grant_id": gid, "started_at": 1.0})
    assert opened.status_code == 201 and opened.json()["next_seq"] == 0
    body = b"".join(canonical_json(e) + b"\n" for e in events[:5])
    path = f"/v1/sessions/{rec.session_id}/events?from_seq=0"
    first = api.put("alice", path, content=body)
    second = api.put("alice", path, content=body)
    assert first.json() == {"next_seq": 5, "stored": 5}
    assert second.json() == {"next_seq": 5, "stored": 0}
    overlap = b"".join(canonical_json(e) + b"\n" for e in events[3:8])
    third = api.put("alice", f"/v1/sessions/{rec.session_id}/events?from_seq=3", content=overlap)
    assert third.json() == {"next_seq": 8, "stored": 3}
    gap = api.put("alice", f"/v1/sessions/{rec.session_id}/events?from_seq=10", content=overlap)
    assert gap.status_code == 409 and gap.json()["error"] == "seq_gap"
    assert gap.json()["next_seq"] == 8
    reopened = api.post("alice", "/v1/sessions",
                        json={"session_id": rec.session_id, "grant_id": gid})
    assert reopened.status_code == 200 and reopened.json()["next_seq"] == 8
    result = upload_spool(rec.path, ClientTransport(api, "alice"))
    assert result.resumed_from == 8
    stored = api.get("alice", f"/v1/sessions/{rec.session_id}/events").json()["events"]
    assert [e["seq"] for e in stored] == list(range(len(events)))


def test_interrupted_upload_resumes_without_duplicates(api: Api, tmp_path: Path) -> None:
    gid = grant_id(api)
    rec = record_session(tmp_path / "spool", gid, produced=60)
    events = read_spool(rec.path)
    broken = ClientTransport(api, "alice", fail_after=3)  # open + 2 chunks, then the link drops
    with pytest.raises(UploadError, match="unreachable"):
        upload_spool(rec.path, broken, chunk_size=3)
    assert rec.path.exists()  # kept for the retry
    partial = api.get("alice", f"/v1/sessions/{rec.session_id}").json()
    assert partial["status"] == "open" and partial["next_seq"] == 6
    outcomes = sync_pending(tmp_path / "spool", ClientTransport(api, "alice"))
    assert [(o.session_id, o.uploaded, o.sealed) for o in outcomes] == [
        (rec.session_id, True, True)]
    stored = api.get("alice", f"/v1/sessions/{rec.session_id}/events").json()["events"]
    assert len(stored) == len(events) and verify_chain(stored) is None
    assert find_pending(tmp_path / "spool") == []


def _tampered(kind: str, events: list[dict[str, object]]) -> tuple[list[dict[str, object]], int]:
    events = [dict(e) for e in events]
    if kind == "edit":
        events[4]["reason"] = "nothing to see"
        return events, 4
    if kind == "edit-rehashed":
        events[4]["client_id"] = "someone-else"
        events[4]["hash"] = event_hash(events[4])
        return events, 5
    if kind == "delete":
        del events[6]
        return events, 6
    events[2], events[3] = events[3], events[2]  # reorder
    return events, 2


@pytest.mark.parametrize("kind", ["edit", "edit-rehashed", "delete", "reorder"])
def test_tampered_spool_is_refused_naming_the_first_bad_seq(
    api: Api, tmp_path: Path, kind: str
) -> None:
    gid = grant_id(api)
    rec = record_session(tmp_path / "spool", gid)
    events, bad = _tampered(kind, read_spool(rec.path))
    rec.path.write_bytes(b"".join(canonical_json(e) + b"\n" for e in events))
    with pytest.raises(UploadError) as info:
        upload_spool(rec.path, ClientTransport(api, "alice"), chunk_size=3)
    assert info.value.status == 409 and info.value.first_bad_seq == bad
    assert f"seq {bad}" in str(info.value)
    assert rec.path.exists()
    stored = api.get("alice", f"/v1/sessions/{rec.session_id}").json()
    assert stored["next_seq"] <= bad and stored["status"] == "open"
    refusals = api.get("erin", "/v1/audit/events", params={"kind": "transcript.store"}).json()
    assert [e["detail"]["first_bad_seq"] for e in refusals["events"]
            if e["outcome"] == "refused" and e["detail"]["session_id"] == rec.session_id] == [bad]


def test_killed_session_is_stored_unsealed(api: Api, tmp_path: Path) -> None:
    gid = grant_id(api)
    rec = record_session(tmp_path / "spool", gid, seal=False)
    [pending] = find_pending(tmp_path / "spool")
    assert pending.sealed is False
    [outcome] = sync_pending(tmp_path / "spool", ClientTransport(api, "alice"))
    assert outcome.uploaded and not outcome.sealed
    info = api.get("alice", f"/v1/sessions/{rec.session_id}").json()
    assert info["status"] == "unsealed" and info["sealed"] is False and info["verified"]


def test_session_needs_your_own_grant(api: Api, tmp_path: Path) -> None:
    gid = grant_id(api, "alice")
    rec = record_session(tmp_path / "spool", gid, subject="dave")
    with pytest.raises(UploadError) as info:
        upload_spool(rec.path, ClientTransport(api, "dave"))
    assert info.value.status == 404 and "unknown_grant" in str(info.value)
    refused = api.get("dave", "/v1/audit/events", params={"kind": "transcript.open"}).json()
    assert [e["outcome"] for e in refused["events"]
            if e["detail"]["session_id"] == rec.session_id] == ["refused"]


def test_large_produce_batches_split_into_small_events(api: Api, tmp_path: Path) -> None:
    gid = grant_id(api)
    rec = TranscriptRecorder(tmp_path / "spool", subject="alice", grant_id=gid,
                             background_sync=False)
    values = [(None, b"v%d" % i) for i in range(1000)]
    rec.on_produced("c1", "orders", 3, batch_bytes(values), 5000, 0)
    rec.seal("closed")
    produced = [e for e in read_spool(rec.path) if e["type"] == "produced"]
    assert [len(e["digests"]) for e in produced] == [256, 256, 256, 232]
    upload_spool(rec.path, ClientTransport(api, "alice"))
    who = api.get("alice", "/v1/audit/produced",
                  params={"topic": "orders", "partition": 3, "offset": 5999}).json()
    assert who["matches"][0]["record_digest"] == record_digest(None, b"v999")
