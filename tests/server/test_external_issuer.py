"""External OIDC issuers: trusted by discovery + JWKS, a groups claim mapped to roles.

A small IdP runs in the test on a loopback port (discovery document and JWKS
over real HTTP); its tokens are minted with its own key. The server finds the
JWKS through discovery, picks up a rotated IdP key on an unknown kid, and
refuses tokens for another audience or from an untrusted issuer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from streamctl.server.keys import public_jwk
from tests.server.conftest import ApiServer, open_api
from tests.server.helpers import bearer


class FakeIdp:
    """Discovery + JWKS of an external issuer; keys can be rotated."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {
            "idp-1": ec.generate_private_key(ec.SECP256R1())
        }
        self.jwks_hits = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {"issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/keys"}
                elif self.path == "/keys":
                    idp.jwks_hits += 1
                    body = {"keys": [public_jwk(k, kid, "ES256") for kid, k in idp.keys.items()]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def token(self, kid: str = "idp-1", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": "streamctl-api",
            "sub": "u-123",
            "preferred_username": "carol",
            "groups": ["kafka-engineers", "staff"],
            "iat": now,
            "exp": now + 300,
        }
        body.update(claims)
        return jwt.encode(body, self.keys[kid], algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[FakeIdp]:
    server = FakeIdp()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def api_with_idp(tmp_path: Path, idp: FakeIdp) -> Iterator[ApiServer]:
    external = [
        {
            "issuer": idp.issuer,
            "audience": "streamctl-api",
            "client_id": "kafka-cli",
            "roles_claim": "groups",
            "subject_claim": "preferred_username",
            "role_map": {"kafka-engineers": "engineer", "kafka-approvers": ["approver"]},
        }
    ]
    yield from open_api(
        tmp_path / "srv", f"sqlite:///{tmp_path / 's.db'}", external_issuers=external
    )


def test_login_config_points_at_the_external_issuer(api_with_idp: ApiServer, idp: FakeIdp) -> None:
    assert api_with_idp.client.get("/v1/login-config").json() == {
        "issuer": idp.issuer,
        "client_id": "kafka-cli",
        "external": True,
    }


def test_external_token_maps_groups_to_roles(api_with_idp: ApiServer, idp: FakeIdp) -> None:
    api = api_with_idp
    me = api.client.get("/v1/whoami", headers=bearer(idp.token())).json()
    assert me == {
        "subject": "carol",
        "kind": "user",
        "roles": ["engineer"],
        "token_expires_at": me["token_expires_at"],
    }
    grant = api.grant(bearer(idp.token()), topics=["orders"], operations=["read"])
    assert grant.status_code == 201 and grant.json()["claims"]["sub"] == "carol"
    plain = api.client.get("/v1/whoami", headers=bearer(idp.token(groups=["staff"]))).json()
    assert plain["roles"] == []


def test_rotated_idp_key_is_fetched_and_bad_tokens_refused(
    api_with_idp: ApiServer, idp: FakeIdp
) -> None:
    api = api_with_idp
    assert api.client.get("/v1/whoami", headers=bearer(idp.token())).status_code == 200
    hits = idp.jwks_hits
    verifier = api.client.app.state.server.external[idp.issuer]  # type: ignore[attr-defined]
    cached = idp.token(kid="idp-1")
    assert api.client.get("/v1/whoami", headers=bearer(cached)).status_code == 200
    assert idp.jwks_hits == hits  # served from the cache
    verifier.min_refetch_seconds = 0  # the default (30 s) would make this test wait
    idp.keys["idp-2"] = ec.generate_private_key(ec.SECP256R1())
    assert api.client.get("/v1/whoami", headers=bearer(idp.token(kid="idp-2"))).status_code == 200
    assert idp.jwks_hits == hits + 1

    def refused(token: str, words: str) -> None:
        r = api.client.get("/v1/whoami", headers=bearer(token))
        assert r.status_code == 401 and words in r.json()["message"], r.json()

    refused(idp.token(aud="another-app"), "wrong audience")
    refused(idp.token(exp=int(time.time()) - 600), "expired")
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(
        {
            "iss": idp.issuer,
            "aud": "streamctl-api",
            "sub": "x",
            "preferred_username": "bob",
            "exp": int(time.time()) + 60,
        },
        other,
        algorithm="ES256",
        headers={"kid": "idp-1"},
    )
    refused(forged, "bad signature")
    stranger = jwt.encode(
        {
            "iss": "https://idp.elsewhere",
            "aud": "streamctl-api",
            "sub": "x",
            "exp": int(time.time()) + 60,
        },
        other,
        algorithm="ES256",
        headers={"kid": "k"},
    )
    refused(stranger, "not trusted here")
