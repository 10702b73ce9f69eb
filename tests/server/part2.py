"""Shared helpers for the access-server part 2 tests: a server folder, users, tokens, a client.

Each test gets its own server folder (settings, policy, keys) and database; requests go
through FastAPI's TestClient with real access tokens minted by the server's own keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from streamctl.server.app import create_app
from streamctl.server.auth import issue_access_token
from streamctl.server.config import load_config
from streamctl.server.device_flow import hash_password
from streamctl.server.starter import write_starter
from streamctl.server.state import ServerState

POLICY = """\
version: 1
ttl: {default_seconds: 3600, max_seconds: 28800}
roles:
  engineer:
    members: [alice, dave]
    grants:
      - topics: ["orders", "orders.*", "payments", "payments.*", "sandbox.*"]
        operations: [read, write, describe]
  approver:
    members: [bob, carol, frank]
    grants:
      - topics: ["orders"]
        operations: [read]
  auditor:
    members: [erin]
    grants:
      - topics: ["orders"]
        operations: [describe]
topic_classes:
  - topics: ["payments", "payments.*"]
    classes: [high-value]
  - topics: ["orders", "orders.*"]
    classes: [pii]
approvals:
  high-value:
    approver_roles: [approver]
    threshold: 1
    reason_required: true
    pending_ttl_seconds: 3600
    max_window_seconds: 14400
  pii:
    approver_roles: [approver]
    threshold: 2
    reason_required: false
    pending_ttl_seconds: 600
    max_window_seconds: 3600
clusters:
  local:
    bootstrap: "127.0.0.1:9092"
    audience: kafka-local
    default: true
"""

USERS = ("alice", "bob", "carol", "dave", "erin", "frank")
_HASH: list[str] = []


def _password_hash() -> str:
    if not _HASH:
        _HASH.append(hash_password("not-used-in-tests"))
    return _HASH[0]


def write_server(folder: Path, database_url: str, **sections: Any) -> Path:
    """A server folder with the test policy; extra top-level settings (webhooks, retention)."""
    extra: dict[str, object] = {
        "users": [{"username": u, "password_hash": _password_hash()} for u in USERS],
        **sections,
    }
    result = write_starter(folder, database_url=database_url, policy_text=POLICY, extra=extra)
    return result.config_path


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'streamctl.db'}"


class Api:
    """A TestClient plus one access token per test user."""

    def __init__(self, client: TestClient, state: ServerState) -> None:
        self.client = client
        self.state = state
        self.tokens = {u: issue_access_token(state, u, "user", "streamctl")[0] for u in USERS}

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def get(self, user: str, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(user), **kw)

    def post(self, user: str, path: str, **kw: Any) -> Any:
        return self.client.post(path, headers=self.headers(user), **kw)

    def put(self, user: str, path: str, **kw: Any) -> Any:
        return self.client.put(path, headers=self.headers(user), **kw)

    def approval(self, user: str = "alice", **body: Any) -> Any:
        payload = {"topics": ["payments"], "operations": ["write"], "duration_seconds": 600,
                   "reason": "incident 42", **body}
        return self.post(user, "/v1/approvals", json=payload)

    def review(self, user: str, approval_id: str, decision: str = "approve",
               reason: str = "ok") -> Any:
        return self.post(user, f"/v1/approvals/{approval_id}/review",
                         json={"decision": decision, "reason": reason})

    def grant(self, user: str, topics: list[str], operations: list[str],
              approval_id: str | None = None, ttl: int = 600) -> Any:
        body: dict[str, Any] = {"topics": topics, "operations": operations,
                                "ttl_seconds": ttl, "reason": "test"}
        if approval_id is not None:
            body["approval_id"] = approval_id
        return self.post(user, "/v1/grants", json=body)


@contextmanager
def running_api(folder: Path, database_url: str, **sections: Any) -> Iterator[Api]:
    """Start the app in-process on a fresh server folder; stop its threads afterwards."""
    config = load_config(write_server(folder, database_url, **sections))
    app = create_app(config)
    with TestClient(app) as client:
        yield Api(client, app.state.server)
    app.state.server.store.dispose()


def settings_of(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


class ClientTransport:
    """The uploader's transport over a TestClient (or any httpx.Client), as one user."""

    def __init__(self, api: Api, user: str, fail_after: int | None = None) -> None:
        self.api = api
        self.user = user
        self.calls: list[tuple[str, str]] = []
        self.fail_after = fail_after  # raise on the call after this many (a dropped link)

    def __call__(self, method: str, path: str, *, json_body: Any = None,
                 content: bytes | None = None, content_type: str | None = None) -> Any:
        from streamctl.transcript.upload import TransportResponse

        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise ConnectionError("access server unreachable")
        self.calls.append((method, path))
        headers = self.api.headers(self.user)
        if content_type:
            headers["Content-Type"] = content_type
        resp = self.api.client.request(method, path, headers=headers, json=json_body,
                                       content=content)
        body = resp.json() if resp.content else {}
        return TransportResponse(resp.status_code, body if isinstance(body, dict) else {})


def grant_id(api: Api, user: str = "alice", topics: tuple[str, ...] = ("orders",)) -> str:
    """Issue a real grant and return its id (a transcript session must be bound to one)."""
    resp = api.grant(user, list(topics), ["read"])
    assert resp.status_code == 201, resp.text
    value: str = resp.json()["grant_id"]
    return value


def backend_url(request: Any, folder: Path) -> str:
    """A fresh database for the fixture's backend param: SQLite file or new PostgreSQL db."""
    if request.param == "sqlite":
        return sqlite_url(folder)
    url: str = request.getfixturevalue("postgres").new_database()
    return url


class TwoServers:
    """Two real `streamctl server run` processes sharing one folder (keys) and one database."""

    def __init__(self, urls: list[str], tokens: dict[str, str]) -> None:
        self.urls = urls
        self.tokens = tokens

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@contextmanager
def two_servers(folder: Path, database_url: str, **sections: Any) -> Iterator[TwoServers]:
    """Start both processes on free ports; tokens come from the shared signing keys."""
    from tests.server.helpers import free_port, run_server

    config_path = write_server(folder, database_url, **sections)
    state = ServerState.open(load_config(config_path))  # migrates once, before both start
    tokens = {u: issue_access_token(state, u, "user", "streamctl")[0] for u in USERS}
    state.store.dispose()
    with run_server(config_path, free_port()) as first, \
            run_server(config_path, free_port()) as second:
        yield TwoServers([first.url, second.url], tokens)


class HttpTransport:
    """The uploader's transport over real HTTP, alternating between servers call by call."""

    def __init__(self, clients: list[Any], headers: dict[str, str]) -> None:
        self.clients = clients
        self.headers = headers
        self.calls = 0

    def __call__(self, method: str, path: str, *, json_body: Any = None,
                 content: bytes | None = None, content_type: str | None = None) -> Any:
        from streamctl.transcript.upload import TransportResponse

        client = self.clients[self.calls % len(self.clients)]
        self.calls += 1
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        resp = client.request(method, path, headers=headers, json=json_body, content=content)
        body = resp.json() if resp.content else {}
        return TransportResponse(resp.status_code, body if isinstance(body, dict) else {})
