"""With an observer but no masker, Fetch answers are relayed as they arrive and still reported."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.headers import response_body_offset
from streamctl.kafka.messages import decode_response
from streamctl.tunnel import connection
from streamctl.tunnel.engine import Tunnel, TunnelThread
from tests.harness.kafka import KafkaCluster
from tests.policy.grants import make_grant
from tests.tunnel.test_hooks import Recorder, UpperMasker, raw_fetch


def test_relayed_fetch_is_reported_with_the_bytes_the_client_got(
    kafka: KafkaCluster, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka.create_topic(unique_topic)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=0)
    for i in range(5):
        producer.send(unique_topic, b"value %d" % i, partition=0)
    producer.flush(30)
    producer.close(5)

    def held_whole(*_args: object) -> None:
        raise AssertionError("the Fetch answer was held whole instead of relayed")

    monkeypatch.setattr(connection.ClientConnection, "_fetch_response", held_whole)
    recorder = Recorder()
    grant = make_grant(topics=(unique_topic,), ops=("read",), bootstrap=kafka.bootstrap)
    with TunnelThread(Tunnel(grant, None, observer=recorder)) as t:
        assert t.bootstrap is not None
        answer = raw_fetch(t.bootstrap, unique_topic)
    body = decode_response(ApiKey.FETCH, 4, answer, response_body_offset(answer, 0))
    sent = body.responses[0].partitions[0]
    assert sent.error_code == 0 and b"value 4" in sent.records
    with recorder.lock:
        fetched = [f for f in recorder.fetched if f[1] == unique_topic]
    assert len(fetched) == 1
    _conn, _topic, partition, records, error_code, counts = fetched[0]
    assert (partition, error_code, counts) == (0, 0, {})
    assert records == bytes(sent.records)  # exactly what the client received


def test_an_observer_alone_keeps_the_fetch_versions_that_relay() -> None:
    grant = make_grant(topics=("orders",), ops=("read",), bootstrap="127.0.0.1:9")
    observed = Tunnel(grant, None, observer=Recorder())
    masked = Tunnel(grant, None, masker=UpperMasker("orders", "none"), observer=Recorder())
    assert observed.ctx.versions[ApiKey.FETCH][1] == 15  # v16+ answers must be held whole
    assert masked.ctx.versions[ApiKey.FETCH][1] >= 16
