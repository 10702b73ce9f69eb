"""A grant token logs in to a real broker's SASL/OAUTHBEARER listener that trusts our JWKS.

The harness broker validates tokens itself (KIP-768: JWKS URL, expected issuer
and audience), so this proves brokers need no static credential: the grant is
the credential. The same claims signed by another key, under the same kid, are
refused by the broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from kafka import KafkaAdminClient, KafkaProducer
from kafka.net.sasl.oauth import AbstractTokenProvider

from tests.server.helpers import free_port, make_server_dir, run_server


class StaticToken(AbstractTokenProvider):  # type: ignore[misc]
    """Hands kafka-python one fixed bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token


def _sasl(bootstrap: str, token: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "OAUTHBEARER",
        "sasl_oauth_token_provider": StaticToken(token),
        "request_timeout_ms": 15000,
    }


@pytest.mark.sasl
def test_grant_token_accepted_by_broker_and_foreign_key_refused(
    tmp_path: Path, kafka_sasl_factory: Callable[..., Any]
) -> None:
    import httpx

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    result = make_server_dir(tmp_path / "srv", f"sqlite:///{tmp_path / 'db.sqlite'}", issuer)
    with run_server(result.config_path, port) as server, httpx.Client(base_url=server.url) as http:
        from tests.server.helpers import device_login

        access = device_login(http, "alice", "alice-password-1")["access_token"]
        issued = http.post("/v1/grants", headers={"Authorization": f"Bearer {access}"},
                           json={"topics": ["sandbox.*"], "operations": ["read", "write"],
                                 "ttl_seconds": 600})
        assert issued.status_code == 201, issued.text
        token = issued.json()["token"]
        broker = kafka_sasl_factory(
            jwks_url=f"{server.url}/.well-known/jwks.json", issuer=issuer, audience="kafka-local"
        )
        bootstrap = broker.bootstrap_sasl

        producer = KafkaProducer(**_sasl(bootstrap, token), acks="all")
        try:
            meta = producer.send("sandbox.oauth", b"signed by the access server").get(timeout=30)
            assert meta.topic == "sandbox.oauth" and meta.offset >= 0
        finally:
            producer.close()

        # the same claims, same kid, signed by a key the JWKS does not hold
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        claims["exp"] = int(time.time()) + 600
        forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                            headers={"kid": header["kid"]})
        with pytest.raises(Exception) as refused:
            admin = KafkaAdminClient(**_sasl(bootstrap, forged), bootstrap_timeout_ms=5000)
            try:
                admin.list_topics()
            finally:
                admin.close()
        assert type(refused.value).__name__ in ("KafkaTimeoutError", "NoBrokersAvailable",
                                                "SaslAuthenticationFailedError")
        # the broker itself refused the token: its log says so for this connection
        deadline = time.monotonic() + 20
        while True:
            log = broker.log_path.read_text(errors="replace")
            failures = [line for line in log.splitlines() if "Failed authentication" in line]
            if failures or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert failures, broker.log_tails()
        assert any("OAUTHBEARER" in line or "invalid_token" in line or "signature" in line.lower()
                   for line in failures), failures
