"""Upstream security against a real broker: SCRAM-SHA-512, OAUTHBEARER with the grant token
(JWKS), KIP-368 re-authentication before the broker's session lifetime ends, and TLS (private
CA, client certificate required by the broker, hostname check).

Issue 4, must-show 3: the broker trusts only a JWKS; the grant token (signed here with a fresh
ES256 key, as the access server would sign it) is accepted, a token signed by another key is
refused by the broker itself.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

from streamctl.policy.grant import Grant
from streamctl.tunnel.engine import Tunnel, TunnelThread
from streamctl.tunnel.upstream import UpstreamError, UpstreamSecurity, open_upstream
from tests.harness.kafka import KafkaCluster, SaslSettings
from tests.harness.processes import free_port
from tests.policy.grants import make_grant

pytestmark = pytest.mark.sasl

ISSUER = "https://access.streamctl.test"
AUDIENCE = "kafka-test-cluster"
REAUTH_MS = 4000
PLAIN_USER = "plain-user"
PLAIN_PASSWORD = secrets.token_urlsafe(12)
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


class Pki:
    """A private CA, a broker certificate for 127.0.0.1 and a client certificate, as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = self._cert("streamctl test CA", self.ca_key, None, ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = self._cert("127.0.0.1", server_key, [x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1")), x509.DNSName("localhost")])
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = self._cert("streamctl-tunnel", client_key, None)
        self.ca_pem = directory / "ca.pem"
        self.server_pem = directory / "server.pem"
        self.client_pem = directory / "client.pem"
        self.client_key = directory / "client.key"
        self.ca_pem.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self.server_pem.write_bytes(_key_pem(server_key) + server.public_bytes(
            serialization.Encoding.PEM) + self.ca_pem.read_bytes())
        self.client_pem.write_bytes(client.public_bytes(serialization.Encoding.PEM))
        self.client_key.write_bytes(_key_pem(client_key))
        self.client_key.chmod(0o600)

    def _cert(self, name: str, key: ec.EllipticCurvePrivateKey,
              san: list[x509.GeneralName] | None, ca: bool = False) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer = subject if ca else self.ca_cert.subject
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.ca_key, hashes.SHA256())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def sign(grant: Grant, key: ec.EllipticCurvePrivateKey) -> str:
    claims = {**grant.to_claims(), "iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time())}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def sasl_broker(signing_key: ec.EllipticCurvePrivateKey, pki: Pki) -> Iterator[KafkaCluster]:
    jwks = Jwks(signing_key)
    settings = SaslSettings(jwks_url=jwks.url, issuer=ISSUER, audience=AUDIENCE)
    # KIP-368: the broker ends sessions after REAUTH_MS unless the client re-authenticates.
    cluster = KafkaCluster(1, sasl=settings,
                           extra_config={"connections.max.reauth.ms": str(REAUTH_MS)})
    # The same broker also gets a TLS listener that requires a client certificate.
    node = cluster.node_by_id[1]
    tls_port = free_port()
    cluster.extra_config.update({
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:"
                     f"{node.controller_port},SASL://127.0.0.1:{node.sasl_port},"
                     f"SSL://127.0.0.1:{tls_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port},SASL://127.0.0.1:"
                                f"{node.sasl_port},SSL://127.0.0.1:{tls_port}",
        "listener.security.protocol.map":
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT,SSL:SSL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.server_pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca_pem),
        "ssl.client.auth": "required",
        # PLAIN and SCRAM-SHA-256 as well, so every mechanism the tunnel speaks meets a broker
        "listener.name.sasl.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{PLAIN_USER}="{PLAIN_PASSWORD}";',
        "listener.name.sasl.scram-sha-256.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl.sasl.enabled.mechanisms":
            "SCRAM-SHA-512,OAUTHBEARER,PLAIN,SCRAM-SHA-256",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,OAUTHBEARER,PLAIN,SCRAM-SHA-256",
    })
    cluster.tls_bootstrap = f"127.0.0.1:{tls_port}"  # type: ignore[attr-defined]
    try:
        cluster.start()
        admin = cluster.admin()
        try:
            admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                cluster.scram_user, ScramMechanism.SCRAM_SHA_256, cluster.scram_password,
                iterations=4096)])
        finally:
            admin.close()
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


def test_tls_upstream_with_private_ca_and_client_certificate(
    sasl_broker: KafkaCluster, pki: Pki, unique_topic: str
) -> None:
    sasl_broker.create_topic(unique_topic)
    tls_bootstrap: str = sasl_broker.tls_bootstrap  # type: ignore[attr-defined]
    grant = make_grant(topics=(unique_topic,), ops=("read", "write"), bootstrap=tls_bootstrap,
                       security_protocol="SSL")
    security = UpstreamSecurity.from_cluster(
        grant.cluster, tls_ca_file=str(pki.ca_pem), tls_cert_file=str(pki.client_pem),
        tls_key_file=str(pki.client_key),
    )
    assert security.uses_tls and security.tls_check_hostname
    with TunnelThread(Tunnel(grant, None, security=security)) as t:
        assert t.bootstrap is not None
        assert roundtrip(t.bootstrap, unique_topic) == [f"m-{i}".encode() for i in range(5)]
        assert t.tunnel.stats.connection_errors == 0

    host, port = tls_bootstrap.rsplit(":", 1)
    (pki.ca_pem.parent / "other").mkdir(exist_ok=True)
    other_ca = Pki(pki.ca_pem.parent / "other")  # a CA the broker's certificate is not from
    untrusting = UpstreamSecurity(security_protocol="SSL", tls_ca_file=str(other_ca.ca_pem))
    with pytest.raises(UpstreamError, match="certificate verify failed"):
        trio.run(open_upstream, host, int(port), untrusting, None)
    wrong_name = UpstreamSecurity(
        security_protocol="SSL", tls_ca_file=str(pki.ca_pem), tls_server_hostname="kafka.example",
        tls_cert_file=str(pki.client_pem), tls_key_file=str(pki.client_key),
    )
    with pytest.raises(UpstreamError, match="TLS"):
        trio.run(open_upstream, host, int(port), wrong_name, None)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_plain_and_scram_sha_256_upstream(sasl_broker: KafkaCluster, mechanism: str) -> None:
    host, port = sasl_broker.bootstrap_sasl.rsplit(":", 1)
    user, password = (
        (PLAIN_USER, PLAIN_PASSWORD) if mechanism == "PLAIN"
        else (sasl_broker.scram_user, sasl_broker.scram_password)
    )

    async def attempt(secret: str) -> None:
        security = UpstreamSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                                    sasl_username=user, sasl_password=secret)
        upstream = await open_upstream(host, int(port), security, None)
        await upstream.stream.aclose()

    deadline = time.monotonic() + 20  # a fresh SCRAM credential takes a moment to propagate
    while True:
        try:
            trio.run(attempt, password)
            break
        except UpstreamError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with pytest.raises(UpstreamError, match=f"refused SASL {mechanism}"):
        trio.run(attempt, password + "-wrong")


def test_acks_0_records_reach_a_tls_broker_though_the_client_closes_at_once(
    sasl_broker: KafkaCluster, pki: Pki, unique_topic: str
) -> None:
    """Over TLS every frame goes through the writer task: one a client sent just before it
    closed (an acks=0 Produce, which gets no answer) must still reach the broker."""
    sasl_broker.create_topic(unique_topic)
    tls_bootstrap: str = sasl_broker.tls_bootstrap  # type: ignore[attr-defined]
    grant = make_grant(topics=(unique_topic,), ops=("read", "write"), bootstrap=tls_bootstrap,
                       security_protocol="SSL")
    security = UpstreamSecurity.from_cluster(
        grant.cluster, tls_ca_file=str(pki.ca_pem), tls_cert_file=str(pki.client_pem),
        tls_key_file=str(pki.client_key),
    )
    sent = [f"acks0-{i}".encode() for i in range(5)]
    with TunnelThread(Tunnel(grant, None, security=security)) as t:
        assert t.bootstrap is not None
        for value in sent:
            subprocess.run(["kcat", "-P", "-b", t.bootstrap, "-t", unique_topic, "-X", "acks=0"],
                           input=value + b"\n", check=True, timeout=60)
        consumer = KafkaConsumer(unique_topic, bootstrap_servers=t.bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=5000)
        try:
            got = sorted(m.value for m in consumer)
        finally:
            consumer.close()
    assert got == sent
