"""Upstream SASL against a real broker: SCRAM-SHA-512, OAUTHBEARER with the grant token (JWKS),
and KIP-368 re-authentication before the broker's session lifetime ends.

Issue 4, must-show 3: the broker trusts only a JWKS; the grant token (signed here with a fresh
ES256 key, as the access server would sign it) is accepted, a token signed by another key is
refused by the broker itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from kafka import KafkaConsumer, KafkaProducer

from streamctl.policy.grant import Grant
from streamctl.tunnel.engine import Tunnel, TunnelThread
from streamctl.tunnel.upstream import UpstreamError, UpstreamSecurity, open_upstream
from tests.harness.kafka import KafkaCluster, SaslSettings
from tests.policy.grants import make_grant

pytestmark = pytest.mark.sasl

ISSUER = "https://access.streamctl.test"
AUDIENCE = "kafka-test-cluster"
REAUTH_MS = 4000
KID = "grant-key-1"


class Jwks:
    """A tiny JWKS endpoint on loopback serving one public key, like the access server's."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": KID, "alg": "ES256", "use": "sig"})
        body = json.dumps({"keys": [jwk]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def sign(grant: Grant, key: ec.EllipticCurvePrivateKey) -> str:
    claims = {**grant.to_claims(), "iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time())}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def sasl_broker(signing_key: ec.EllipticCurvePrivateKey) -> Iterator[KafkaCluster]:
    jwks = Jwks(signing_key)
    settings = SaslSettings(jwks_url=jwks.url, issuer=ISSUER, audience=AUDIENCE)
    # KIP-368: the broker ends sessions after REAUTH_MS unless the client re-authenticates.
    cluster = KafkaCluster(1, sasl=settings,
                           extra_config={"connections.max.reauth.ms": str(REAUTH_MS)})
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        jwks.server.shutdown()


def roundtrip(bootstrap: str, topic: str, seconds: float = 0.0) -> list[bytes]:
    """Produce through the tunnel (for `seconds` at least), then read everything back."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=20000)
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        while True:
            producer.send(topic, f"m-{sent}".encode()).get(timeout=30)
            sent += 1
            if time.monotonic() >= deadline and sent >= 5:
                break
            time.sleep(0.2)
    finally:
        producer.close(5)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    try:
        got = [m.value for m in consumer]
    finally:
        consumer.close()
    assert len(got) == sent
    return got


def test_oauthbearer_grant_token_accepted_and_reauthenticated(
    sasl_broker: KafkaCluster, signing_key: ec.EllipticCurvePrivateKey, unique_topic: str
) -> None:
    sasl_broker.create_topic(unique_topic)
    grant = make_grant(
        topics=(unique_topic,), ops=("read", "write"), bootstrap=sasl_broker.bootstrap_sasl,
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
    )
    with TunnelThread(Tunnel(grant, sign(grant, signing_key))) as t:
        assert t.bootstrap is not None
        got = roundtrip(t.bootstrap, unique_topic, seconds=REAUTH_MS / 1000 * 2)
        assert got[0] == b"m-0"
        # connections outlived the broker's session lifetime: they re-authenticated in band
        assert t.tunnel.stats.reauthentications >= 1
        assert t.tunnel.stats.connection_errors == 0


def test_token_signed_by_another_key_is_refused_by_the_broker(
    sasl_broker: KafkaCluster, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    grant = make_grant(bootstrap=sasl_broker.bootstrap_sasl)
    intruder = ec.generate_private_key(ec.SECP256R1())
    security = UpstreamSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER")
    host, port = sasl_broker.bootstrap_sasl.split(",")[0].rsplit(":", 1)

    async def attempt(token: str) -> float | None:
        upstream = await open_upstream(host, int(port), security, token)
        await upstream.stream.aclose()
        return upstream.session_lifetime

    lifetime = trio.run(attempt, sign(grant, signing_key))
    assert lifetime is not None and 0 < lifetime <= REAUTH_MS / 1000
    with pytest.raises(UpstreamError, match="refused SASL OAUTHBEARER"):
        trio.run(attempt, sign(grant, intruder))


def test_scram_sha_512_upstream(sasl_broker: KafkaCluster, unique_topic: str) -> None:
    sasl_broker.create_topic(unique_topic)
    grant = make_grant(topics=(unique_topic,), ops=("read", "write"),
                       bootstrap=sasl_broker.bootstrap_sasl)
    security = UpstreamSecurity(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_username=sasl_broker.scram_user, sasl_password=sasl_broker.scram_password,
    )
    assert sasl_broker.scram_password not in repr(security)
    with TunnelThread(Tunnel(grant, None, security=security)) as t:
        assert t.bootstrap is not None
        roundtrip(t.bootstrap, unique_topic, seconds=REAUTH_MS / 1000 * 1.5)
        assert t.tunnel.stats.reauthentications >= 1
    wrong = UpstreamSecurity(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_username=sasl_broker.scram_user, sasl_password="not-the-password",
    )
    host, port = sasl_broker.bootstrap_sasl.rsplit(":", 1)
    with pytest.raises(UpstreamError, match="refused SASL SCRAM-SHA-512"):
        trio.run(open_upstream, host, int(port), wrong, None)
