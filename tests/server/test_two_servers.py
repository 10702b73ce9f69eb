"""Two `streamctl server run` processes on one PostgreSQL: shared keys, shared state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from streamctl.policy.token import verify_grant_token
from streamctl.server.keys import KeyRing
from tests.server.helpers import DEVICE_GRANT, PASSWORDS, free_port, make_server_dir, run_server


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.postgres
def test_two_servers_issue_and_verify_each_others_grants(tmp_path: Path, postgres: Any) -> None:
    port_a, port_b = free_port(), free_port()
    issuer = f"http://127.0.0.1:{port_a}"  # one public name; both processes serve it
    result = make_server_dir(tmp_path / "srv", postgres.new_database(), issuer)
    with (
        run_server(result.config_path, port_a) as a,
        run_server(result.config_path, port_b) as b,
        httpx.Client(base_url=a.url) as ha,
        httpx.Client(base_url=b.url) as hb,
    ):
        # device login started on A, approved on B's page, redeemed on A
        code = ha.post("/oauth/device_authorization", data={"client_id": "streamctl"}).json()
        page = hb.post("/device", data={"user_code": code["user_code"], "username": "alice",
                                        "password": PASSWORDS["alice"], "action": "approve"})
        assert "Signed in" in page.text
        tokens = ha.post("/oauth/token", data={"grant_type": DEVICE_GRANT,
                                               "device_code": code["device_code"],
                                               "client_id": "streamctl"})
        assert tokens.status_code == 200, tokens.text
        access = tokens.json()["access_token"]
        # a device code redeemed on A cannot be redeemed again on B
        replay = hb.post("/oauth/token", data={"grant_type": DEVICE_GRANT,
                                               "device_code": code["device_code"],
                                               "client_id": "streamctl"})
        assert replay.json()["error"] == "invalid_grant"

        body = {"topics": ["orders"], "operations": ["read"]}
        from_a = ha.post("/v1/grants", json=body, headers=_auth(access)).json()
        from_b = hb.post("/v1/grants", json=body, headers=_auth(access)).json()
        jwks_a = ha.get("/.well-known/jwks.json").json()
        jwks_b = hb.get("/.well-known/jwks.json").json()
        assert jwks_a == jwks_b
        assert verify_grant_token(from_a["token"], jwks_b, issuer, "kafka-local").subject == "alice"
        assert verify_grant_token(from_b["token"], jwks_a, issuer, "kafka-local").subject == "alice"

        # both list both grants; a revocation on A is seen on B
        listed = {g["grant_id"] for g in hb.get("/v1/grants", headers=_auth(access)).json()}
        assert listed == {from_a["grant_id"], from_b["grant_id"]}
        assert ha.post(f"/v1/grants/{from_b['grant_id']}/revoke",
                       headers=_auth(access)).json()["revoked"]
        status = hb.get(f"/v1/grants/{from_b['grant_id']}/status",
                        headers=_auth(from_b["token"])).json()
        assert status["revoked"] is True and status["active"] is False

        # a key rotation (what `server rotate-key` does) is picked up by both running processes
        KeyRing(result.config_path.parent / "keys", keep_seconds=3600).create("ES256")
        after_a = ha.post("/v1/grants", json=body, headers=_auth(access)).json()["token"]
        after_b = hb.post("/v1/grants", json=body, headers=_auth(access)).json()["token"]
        kid_a = jwt.get_unverified_header(after_a)["kid"]
        assert kid_a == jwt.get_unverified_header(after_b)["kid"]
        assert kid_a != jwt.get_unverified_header(from_a["token"])["kid"]
        jwks = hb.get("/.well-known/jwks.json").json()
        assert len(jwks["keys"]) == 2
        for token in (from_a["token"], after_a, after_b):
            verify_grant_token(token, jwks, issuer, "kafka-local")
