"""Two server processes on one PostgreSQL: approvals seen across them, concurrent uploads lossless."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamctl.transcript.chain import verify_chain
from streamctl.transcript.events import canonical_json
from streamctl.transcript.spool import read_spool
from streamctl.transcript.upload import upload_events
from tests.server.part2 import HttpTransport, TwoServers, two_servers
from tests.server.test_transcripts import record_session

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[TwoServers]:
    folder = tmp_path_factory.mktemp("two-servers")
    with two_servers(folder, postgres.new_database()) as pair:
        yield pair


def test_approval_on_one_server_wakes_a_waiter_on_the_other(servers: TwoServers) -> None:
    a, b = (httpx.Client(base_url=u, timeout=60) for u in servers.urls)
    with a, b:
        created = a.post("/v1/approvals", headers=servers.headers("alice"), json={
            "topics": ["payments"], "operations": ["write"], "duration_seconds": 600,
            "reason": "two servers"})
        assert created.status_code == 201, created.text
        approval_id = created.json()["id"]
        result: dict[str, Any] = {}

        def wait() -> None:
            resp = b.get(f"/v1/approvals/{approval_id}/wait", params={"timeout": 45},
                         headers=servers.headers("alice"))
            result.update(resp.json(), finished=time.monotonic())

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive()  # still waiting: nothing decided yet
        reviewed_at = time.monotonic()
        review = a.post(f"/v1/approvals/{approval_id}/review", headers=servers.headers("bob"),
                        json={"decision": "approve", "reason": "fine"})
        assert review.status_code == 200, review.text
        waiter.join(timeout=60)
        assert result["status"] == "approved" and result["finished"] >= reviewed_at
        assert result["reviews"][0]["reviewer"] == "bob"


def test_fifty_concurrent_uploads_across_both_lose_nothing(servers: TwoServers,
                                                           tmp_path: Path) -> None:
    clients = [httpx.Client(base_url=u, timeout=60) for u in servers.urls]
    try:
        grant = clients[0].post("/v1/grants", headers=servers.headers("alice"), json={
            "topics": ["orders"], "operations": ["read"], "ttl_seconds": 600, "reason": "t"})
        assert grant.status_code == 201, grant.text
        gid = grant.json()["grant_id"]
        spools = [record_session(tmp_path / "spool", gid, produced=20 + i % 7)
                  for i in range(50)]
        sessions = {r.session_id: read_spool(r.path) for r in spools}
        jobs = list(sessions.items()) + list(sessions.items())[:10]  # 10 uploaded twice at once

        def upload(job: tuple[str, list[dict[str, Any]]]) -> int:
            session_id, events = job
            transport = HttpTransport(clients, servers.headers("alice"))
            return upload_events(session_id, events, transport, chunk_size=3).events

        with ThreadPoolExecutor(max_workers=20) as pool:
            uploaded = list(pool.map(upload, jobs))
        assert uploaded == [len(events) for _, events in jobs]
        for session_id, events in sessions.items():
            info = clients[1].get(f"/v1/sessions/{session_id}",
                                  headers=servers.headers("alice")).json()
            assert info["status"] == "sealed" and info["verified"], info
            assert info["next_seq"] == len(events)
            stored = clients[0].get(f"/v1/sessions/{session_id}/events",
                                    headers=servers.headers("alice")).json()["events"]
            assert [canonical_json(e) for e in stored] == [canonical_json(e) for e in events]
            assert verify_chain(stored) is None
        listed = clients[0].get("/v1/sessions", params={"limit": 1000},
                                headers=servers.headers("alice")).json()["sessions"]
        assert set(sessions) <= {s["session_id"] for s in listed}
    finally:
        for client in clients:
            client.close()
