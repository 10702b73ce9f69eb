"""The SASL broker variant: no credentials and bad credentials are refused, SCRAM and JWKS-checked
OAUTHBEARER tokens are accepted."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import confluent_kafka
import jwt
import pytest
from confluent_kafka.admin import AdminClient
from cryptography.hazmat.primitives.asymmetric import rsa
from kafka import KafkaConsumer, KafkaProducer

from tests.harness.kafka import KafkaCluster

pytestmark = pytest.mark.sasl

SaslFactory = Callable[..., KafkaCluster]
ISSUER = "https://issuer.streamctl.test"
AUDIENCE = "kafka-test"


def _list_topics(config: dict[str, object]) -> set[str]:
    """Ask for metadata with librdkafka; raises KafkaException as soon as the broker refuses."""
    errors: list[confluent_kafka.KafkaError] = []
    admin = AdminClient({**config, "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while True:
        try:
            return set(admin.list_topics(timeout=1).topics)
        except confluent_kafka.KafkaException as error:
            admin.poll(0.2)  # serves error_cb, which says why (e.g. authentication failed)
            if errors or time.monotonic() > deadline:
                raise confluent_kafka.KafkaException(f"{error} (error_cb: {errors[:3]})") from error


class _Jwks:
    """A JWKS endpoint on a loopback port serving one RSA public key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                payload = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: rsa.RSAPrivateKey | None = None, **overrides: object) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        claims.update(overrides)
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def jwks() -> Iterator[_Jwks]:
    endpoint = _Jwks()
    yield endpoint
    endpoint.server.shutdown()


@pytest.fixture(scope="module")
def broker(kafka_sasl_factory: SaslFactory, jwks: _Jwks) -> KafkaCluster:
    """One SASL broker (SCRAM-SHA-512 and OAUTHBEARER checked against `jwks`) for this module."""
    return kafka_sasl_factory(jwks_url=jwks.url, issuer=ISSUER, audience=AUDIENCE)


def _oauth_config(broker: KafkaCluster, token: str) -> dict[str, object]:
    return {
        "bootstrap.servers": broker.bootstrap_sasl,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": lambda _config: (token, time.time() + 300, "alice"),
    }


def test_oauthbearer_token_checked_against_jwks(
    broker: KafkaCluster, jwks: _Jwks, unique_topic: str
) -> None:
    broker.create_topic(unique_topic)
    assert unique_topic in _list_topics(_oauth_config(broker, jwks.token()))

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(confluent_kafka.KafkaException, match="_AUTHENTICATION"):
        _list_topics(_oauth_config(broker, jwks.token(key=other_key)))
    with pytest.raises(confluent_kafka.KafkaException, match="_AUTHENTICATION"):
        _list_topics(_oauth_config(broker, jwks.token(aud="someone-else")))
    with pytest.raises(confluent_kafka.KafkaException, match="_AUTHENTICATION"):
        _list_topics(_oauth_config(broker, jwks.token(exp=int(time.time()) - 600)))


def test_client_without_credentials_is_refused(broker: KafkaCluster) -> None:
    with pytest.raises(confluent_kafka.KafkaException):
        _list_topics({"bootstrap.servers": broker.bootstrap_sasl})


def test_wrong_scram_password_is_refused(broker: KafkaCluster) -> None:
    with pytest.raises(confluent_kafka.KafkaException, match="_AUTHENTICATION"):
        _list_topics(
            {
                "bootstrap.servers": broker.bootstrap_sasl,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": broker.scram_user,
                "sasl.password": broker.scram_password + "-wrong",
            }
        )


def test_scram_client_is_accepted(broker: KafkaCluster, unique_topic: str) -> None:
    broker.create_topic(unique_topic)
    credentials = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": broker.scram_user,
        "sasl_plain_password": broker.scram_password,
    }
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_sasl, **credentials)
    try:
        for i in range(10):
            producer.send(unique_topic, f"scram-{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        unique_topic,
        bootstrap_servers=broker.bootstrap_sasl,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        **credentials,
    )
    try:
        values = [message.value for _, message in zip(range(10), consumer, strict=False)]
    finally:
        consumer.close()
    assert values == [f"scram-{i}".encode() for i in range(10)]
