"""Approvals over HTTP: create/list/review/wait, segregation of duties, and use in grants."""

from __future__ import annotations

import threading
import time

import pytest

from tests.server.part2 import Api, backend_url, running_api


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Api:
    """One server per module and backend (tests use fresh ids, so they do not collide)."""
    folder = tmp_path_factory.mktemp("server")
    with running_api(folder, backend_url(request, folder)) as api:
        yield api  # type: ignore[misc]


def test_create_list_review_and_grant_capped_by_window(api: Api) -> None:
    created = api.approval(duration_seconds=900, reviewers=["bob"])
    assert created.status_code == 201, created.text
    ap = created.json()
    assert ap["status"] == "pending" and ap["requester"] == "alice"
    assert ap["topics"] == ["payments"] and ap["operations"] == ["write"]
    assert ap["reason"] == "incident 42" and ap["reviews"] == []
    def ids(user: str, scope: str) -> list[str]:
        listed = api.get(user, "/v1/approvals", params={"scope": scope}).json()["approvals"]
        return [a["id"] for a in listed]

    assert ap["id"] in ids("alice", "mine") and ap["id"] not in ids("bob", "mine")
    assert ap["id"] not in ids("alice", "reviewable")  # never your own
    assert ap["id"] in ids("bob", "reviewable")
    assert ids("dave", "reviewable") == []  # no approver role
    assert api.get("dave", f"/v1/approvals/{ap['id']}").status_code == 404

    # Without the approval the write is refused, with the next command to run.
    refused = api.grant("alice", ["payments"], ["write"])
    assert refused.status_code == 403 and refused.json()["error"] == "approval_required"
    pending = api.grant("alice", ["payments"], ["write"], ap["id"])
    assert pending.status_code == 403 and "pending" in pending.json()["message"]

    reviewed = api.review("bob", ap["id"], reason="looks right")
    assert reviewed.status_code == 200
    assert reviewed.json()["status"] == "approved"
    assert reviewed.json()["reviews"][0]["reviewer"] == "bob"
    assert api.get("alice", f"/v1/approvals/{ap['id']}").json()["status"] == "approved"
    issued = api.grant("alice", ["payments"], ["write"], ap["id"], ttl=3600)
    assert issued.status_code == 201, issued.text
    window_end = api.get("alice", f"/v1/approvals/{ap['id']}").json()["window_end"]
    import datetime as dt

    assert issued.json()["claims"]["exp"] <= dt.datetime.fromisoformat(window_end).timestamp()
    assert issued.json()["claims"]["streamctl"]["approval_id"] == ap["id"]


def test_self_approval_is_refused(api: Api) -> None:
    ap = api.approval().json()
    resp = api.review("alice", ap["id"])
    assert resp.status_code == 403 and resp.json()["error"] == "self_approval"
    assert "can never review" in resp.json()["message"]
    assert api.get("alice", f"/v1/approvals/{ap['id']}").json()["status"] == "pending"


def test_reviewer_without_the_approver_role_is_refused(api: Api) -> None:
    ap = api.approval().json()
    resp = api.review("dave", ap["id"])
    assert resp.status_code == 403 and resp.json()["error"] == "not_an_approver"
    assert "approver" in resp.json()["message"] and "high-value" in resp.json()["message"]
    assert api.get("alice", f"/v1/approvals/{ap['id']}").json()["reviews"] == []


def test_same_approver_twice_does_not_reach_a_threshold_of_two(api: Api) -> None:
    ap = api.approval(topics=["orders"], operations=["read"], reason="").json()
    assert ap["threshold"] == 2
    assert api.review("bob", ap["id"]).json()["status"] == "pending"
    assert ap["id"] not in [  # bob has reviewed it: no longer in his queue
        a["id"] for a in api.get("bob", "/v1/approvals", params={"scope": "reviewable"}).json()[
            "approvals"]]
    again = api.review("bob", ap["id"])
    assert again.status_code == 409 and again.json()["error"] == "already_reviewed"
    assert "does not count" in again.json()["message"]
    assert api.get("alice", f"/v1/approvals/{ap['id']}").json()["status"] == "pending"
    done = api.review("carol", ap["id"]).json()
    assert done["status"] == "approved"
    assert sorted(r["reviewer"] for r in done["reviews"]) == ["bob", "carol"]


def test_approval_for_other_topics_or_operations_is_refused(api: Api) -> None:
    ap = api.approval().json()
    api.review("bob", ap["id"])
    other_topic = api.grant("alice", ["payments.eu"], ["write"], ap["id"])
    assert other_topic.status_code == 403
    assert "covers payments, not payments.eu" in other_topic.json()["message"]
    read_only = api.approval(operations=["read"]).json()
    api.review("bob", read_only["id"])
    other_op = api.grant("alice", ["payments"], ["write"], read_only["id"])
    assert other_op.status_code == 403
    assert "covers read, not write" in other_op.json()["message"]
    someone_else = api.grant("dave", ["payments"], ["write"], ap["id"])
    assert someone_else.status_code == 403
    assert "requested by someone else" in someone_else.json()["message"]


def test_use_outside_the_window_is_refused(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    ap = api.approval(duration_seconds=600).json()
    api.review("bob", ap["id"])
    real_now = api.state.now
    monkeypatch.setattr(api.state, "now", lambda: real_now() + 601)
    late = api.grant("alice", ["payments"], ["write"], ap["id"])
    assert late.status_code == 403 and "window ended" in late.json()["message"]
    assert api.get("alice", f"/v1/approvals/{ap['id']}").json()["status"] == "expired"
    monkeypatch.undo()
    start = time.time() + 3600
    future = api.approval(start_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))).json()
    api.review("bob", future["id"])
    early = api.grant("alice", ["payments"], ["write"], future["id"])
    assert early.status_code == 403 and "not started" in early.json()["message"]


def test_denial_reason_and_required_reasons(api: Api) -> None:
    no_reason = api.approval(reason="")
    assert no_reason.status_code == 422 and no_reason.json()["error"] == "reason_required"
    ap = api.approval().json()
    bare = api.review("bob", ap["id"], decision="deny", reason="")
    assert bare.status_code == 422 and bare.json()["error"] == "reason_required"
    denied = api.review("bob", ap["id"], decision="deny", reason="not during the freeze")
    assert denied.json()["status"] == "denied"
    after = api.review("carol", ap["id"])
    assert after.status_code == 409 and after.json()["error"] == "not_pending"
    use = api.grant("alice", ["payments"], ["write"], ap["id"])
    assert use.status_code == 403 and "denied" in use.json()["message"]
    too_long = api.approval(duration_seconds=14401)
    assert too_long.status_code == 422 and too_long.json()["error"] == "window_too_long"
    not_applicable = api.approval(topics=["sandbox.x"])
    assert not_applicable.status_code == 400


def test_pending_requests_expire(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    ap = api.approval().json()
    real_now = api.state.now
    monkeypatch.setattr(api.state, "now", lambda: real_now() + 3601)
    assert api.get("alice", f"/v1/approvals/{ap['id']}").json()["status"] == "expired"
    late = api.review("bob", ap["id"])
    assert late.status_code == 409 and "expired" in late.json()["message"]


def test_wait_returns_on_decision_or_timeout(api: Api) -> None:
    ap = api.approval().json()
    timed_out = api.get("alice", f"/v1/approvals/{ap['id']}/wait", params={"timeout": 0.3})
    assert timed_out.json()["status"] == "pending"
    timer = threading.Timer(0.5, lambda: api.review("bob", ap["id"]))
    timer.start()
    try:
        waited = api.get("alice", f"/v1/approvals/{ap['id']}/wait", params={"timeout": 30})
    finally:
        timer.join()
    assert waited.status_code == 200 and waited.json()["status"] == "approved"


def test_decisions_are_audited(api: Api) -> None:
    ap = api.approval().json()
    api.review("alice", ap["id"])
    api.review("bob", ap["id"])
    events = api.get("erin", "/v1/audit/events", params={"kind": "approval"}).json()["events"]
    events = [e for e in events if e["detail"].get("approval_id") == ap["id"]]
    assert [(e["kind"], e["subject"], e["outcome"]) for e in events] == [
        ("approval.create", "alice", "created"),
        ("approval.review", "alice", "refused"),
        ("approval.review", "bob", "approve"),
    ]
