"""RFC 8628 end to end against a real `streamctl server run`, with a plain httpx OAuth client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamctl.policy.token import verify_grant_token
from streamctl.server.device_flow import hash_password
from tests.server.helpers import (
    CHEAP_HASHER,
    DEVICE_GRANT,
    PASSWORDS,
    ServerProcess,
    free_port,
    make_server_dir,
    run_server,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("device-flow")
    port = free_port()
    result = make_server_dir(
        folder, f"sqlite:///{folder / 'db.sqlite'}", f"http://127.0.0.1:{port}",
        device_code_ttl_seconds=4, device_poll_interval_seconds=1,
        services=[{"client_id": "etl-bot", "secret_hash": hash_password("bot-secret", CHEAP_HASHER),
                   "roles": ["engineer"]},
                  {"client_id": "other-bot", "secret_hash": hash_password("other-secret", CHEAP_HASHER)}],
    )
    with run_server(result.config_path, port) as proc:
        yield proc


def _start(client: httpx.Client) -> dict[str, str]:
    disco = client.get("/.well-known/openid-configuration").json()
    r = client.post(disco["device_authorization_endpoint"], data={"client_id": "streamctl"})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, str] = r.json()
    return body


def _poll(client: httpx.Client, device_code: str) -> httpx.Response:
    return client.post("/oauth/token", data={
        "grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "streamctl"})


def test_pending_slow_down_then_tokens(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        code = _start(client)
        assert code["verification_uri"] == f"{server.url}/device"
        assert code["verification_uri_complete"].endswith(f"user_code={code['user_code']}")
        first = _poll(client, code["device_code"])
        assert first.status_code == 400 and first.json()["error"] == "authorization_pending"
        fast = _poll(client, code["device_code"])  # no wait at all: too fast
        assert fast.json()["error"] == "slow_down"
        page = client.get("/device", params={"user_code": code["user_code"]})
        assert f'value="{code["user_code"]}"' in page.text
        signed = client.post("/device", data={
            "user_code": code["user_code"], "username": "alice",
            "password": PASSWORDS["alice"], "action": "approve"})
        assert "Signed in" in signed.text
        time.sleep(1.2)
        tokens = _poll(client, code["device_code"])
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["refresh_token"]
        me = client.get("/v1/whoami", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.json()["subject"] == "alice"
        grant = client.post("/v1/grants", json={"topics": ["orders"], "operations": ["read"]},
                            headers={"Authorization": f"Bearer {body['access_token']}"}).json()
        jwks = client.get("/.well-known/jwks.json").json()
        assert verify_grant_token(grant["token"], jwks, server.url, "kafka-local").subject == "alice"


def test_access_denied(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        code = _start(client)
        client.post("/device", data={"user_code": code["user_code"], "username": "alice",
                                     "password": PASSWORDS["alice"], "action": "deny"})
        denied = _poll(client, code["device_code"])
        assert denied.status_code == 400 and denied.json()["error"] == "access_denied"


def test_expired_token(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as client:
        code = _start(client)
        time.sleep(4.5)
        expired = _poll(client, code["device_code"])
        assert expired.status_code == 400 and expired.json()["error"] == "expired_token"
        late = client.post("/device", data={"user_code": code["user_code"], "username": "alice",
                                            "password": PASSWORDS["alice"], "action": "approve"})
        assert late.status_code == 400 and "Unknown or expired code" in late.text


def test_client_credentials_for_a_service(server: ServerProcess) -> None:
    proc = server
    with httpx.Client(base_url=proc.url) as client:
        ok = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                         auth=("etl-bot", "bot-secret"))
        assert ok.status_code == 200 and "refresh_token" not in ok.json()
        token = ok.json()["access_token"]
        me = client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["subject"] == "etl-bot" and me["kind"] == "service"
        assert me["roles"] == ["engineer"]
        # the other bot's secret does not open this bot, and it holds no role
        wrong = client.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "etl-bot",
            "client_secret": "other-secret"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        other = client.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "other-bot",
            "client_secret": "other-secret"}).json()["access_token"]
        refused = client.post("/v1/grants", json={"topics": ["orders"], "operations": ["read"]},
                              headers={"Authorization": f"Bearer {other}"})
        assert refused.status_code == 403 and "holds no role" in refused.json()["message"]
    assert "bot-secret" not in proc.log()


def test_streamed_oversized_body_is_refused(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"reason": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    with httpx.Client(base_url=server.url) as client:
        r = client.post("/v1/grants", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in r.request.headers  # sent chunked: the limit counts bytes
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"
        assert client.get("/healthz").status_code == 200
