"""Forged, altered or misdirected tokens are refused, by the verifier and by the API."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from streamctl.kafka.operations import OperationKind
from streamctl.policy.grant import ClusterSettings, Grant
from streamctl.policy.token import TokenError, verify_grant_token, verify_jwt
from streamctl.server.device_flow import hash_password
from streamctl.server.keys import public_jwk
from tests.server.conftest import ApiServer, open_api
from tests.server.helpers import CHEAP_HASHER, bearer

ISS, AUD = "https://access.example", "kafka-prod"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return {"keys": [public_jwk(key, "k1", "ES256")]}


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    grant = Grant(
        grant_id="g-1", subject="alice",
        cluster=ClusterSettings(name="prod", bootstrap="b:9092"),
        topics=("orders",), operations=frozenset({OperationKind.READ}),
        not_before=now, expires_at=now + 600,
    )
    claims = grant.to_claims()
    claims.update({"iss": ISS, "aud": AUD, "iat": now})
    claims.update(over)
    return claims


def _sign(key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1", **headers})


def test_a_good_grant_token_verifies(key: ec.EllipticCurvePrivateKey, jwks: dict[str, Any]) -> None:
    grant = verify_grant_token(_sign(key, _claims()), jwks, ISS, AUD)
    assert grant.subject == "alice" and grant.covers_topic("orders")


def test_alg_none_is_refused(jwks: dict[str, Any]) -> None:
    header = _b64(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(_claims()).encode())}."
    with pytest.raises(TokenError, match="algorithm 'none' is not accepted"):
        verify_grant_token(token, jwks, ISS, AUD)


def test_hs256_signed_with_the_public_key_is_refused(
    key: ec.EllipticCurvePrivateKey, jwks: dict[str, Any]
) -> None:
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    import hashlib
    import hmac

    sig = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{_b64(sig)}"
    with pytest.raises(TokenError, match="algorithm 'HS256' is not accepted"):
        verify_grant_token(token, jwks, ISS, AUD)


def test_unknown_kid_and_missing_kid_are_refused(
    key: ec.EllipticCurvePrivateKey, jwks: dict[str, Any]
) -> None:
    with pytest.raises(TokenError, match="unknown key id 'k2'"):
        verify_grant_token(_sign(key, _claims(), kid="k2"), jwks, ISS, AUD)
    no_kid = jwt.encode(_claims(), key, algorithm="ES256")
    with pytest.raises(TokenError, match="no key id"):
        verify_grant_token(no_kid, jwks, ISS, AUD)


def test_another_key_with_the_same_kid_is_refused(jwks: dict[str, Any]) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenError, match="bad signature"):
        verify_grant_token(_sign(other, _claims()), jwks, ISS, AUD)


def test_wrong_issuer_or_audience_is_refused(
    key: ec.EllipticCurvePrivateKey, jwks: dict[str, Any]
) -> None:
    with pytest.raises(TokenError, match="wrong issuer"):
        verify_grant_token(_sign(key, _claims(iss="https://evil.example")), jwks, ISS, AUD)
    with pytest.raises(TokenError, match="wrong audience"):
        verify_grant_token(_sign(key, _claims(aud="kafka-dev")), jwks, ISS, AUD)


def test_expired_and_not_yet_valid_are_refused(
    key: ec.EllipticCurvePrivateKey, jwks: dict[str, Any]
) -> None:
    past = int(time.time()) - 3600
    with pytest.raises(TokenError, match="expired"):
        verify_grant_token(_sign(key, _claims(exp=past)), jwks, ISS, AUD)
    future = int(time.time()) + 3600
    with pytest.raises(TokenError, match="not valid yet"):
        verify_grant_token(_sign(key, _claims(nbf=future)), jwks, ISS, AUD)
    missing = _claims()
    del missing["nbf"]
    with pytest.raises(TokenError, match="'nbf'"):
        verify_grant_token(_sign(key, missing), jwks, ISS, AUD)


def test_tampered_payload_is_refused(key: ec.EllipticCurvePrivateKey, jwks: dict[str, Any]) -> None:
    token = _sign(key, _claims())
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["streamctl"]["operations"] = ["read", "write", "delete"]
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{sig}"
    with pytest.raises(TokenError, match="bad signature"):
        verify_grant_token(forged, jwks, ISS, AUD)
    with pytest.raises(TokenError, match="not a signed JWT"):
        verify_jwt("garbage", jwks, issuer=ISS, audience=AUD)


def test_the_api_refuses_forged_access_tokens(sqlite_api: ApiServer) -> None:
    api = sqlite_api
    real = api.login("alice")
    header, payload, sig = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert api.client.get("/v1/whoami", headers=bearer(real)).status_code == 200

    def refused(token: str, words: str) -> None:
        r = api.client.get("/v1/whoami", headers=bearer(token))
        assert r.status_code == 401, r.text
        assert words in r.json()["message"], r.json()

    claims_bob = {**claims, "sub": "bob"}
    refused(f"{header}.{_b64(json.dumps(claims_bob).encode())}.{sig}", "bad signature")
    none_header = _b64(json.dumps({"alg": "none", "kid": "x", "typ": "at+jwt"}).encode())
    refused(f"{none_header}.{payload}.", "not accepted")
    other = ec.generate_private_key(ec.SECP256R1())
    kid = jwt.get_unverified_header(real)["kid"]
    refused(jwt.encode(claims, other, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"}),
            "bad signature")
    refused(jwt.encode(claims, other, algorithm="ES256", headers={"kid": "zz", "typ": "at+jwt"}),
            "unknown key id")
    refused(jwt.encode({**claims, "iss": "https://evil"}, other, algorithm="ES256"),
            "not trusted here")
    # a grant token is not an access token
    grant = api.grant(bearer(real), topics=["orders"], operations=["read"]).json()["token"]
    refused(grant, "not an access token")
    assert api.client.get("/v1/whoami", headers={"Authorization": "Basic abc"}).status_code == 401


def test_client_secret_guessing_is_throttled(tmp_path: Path) -> None:
    services = [{"client_id": "etl-bot", "secret_hash": hash_password("right", CHEAP_HASHER)}]
    for api in open_api(tmp_path / "srv", f"sqlite:///{tmp_path / 's.db'}", services=services):
        form = {"grant_type": "client_credentials", "client_id": "etl-bot"}
        for i in range(api.config.user_code_failures_per_window):
            wrong = api.client.post("/oauth/token", data={**form, "client_secret": f"guess-{i}"})
            assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        blocked = api.client.post("/oauth/token", data={**form, "client_secret": "right"})
        assert blocked.status_code == 429 and "too many failed attempts" in blocked.json()["message"]
