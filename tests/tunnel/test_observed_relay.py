"""With an observer but no masker, Fetch answers are relayed as they arrive and still reported."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.headers import response_body_offset
from streamctl.kafka.messages import decode_response
from streamctl.kafka.records import iter_batch_headers
from streamctl.tunnel import connection
from streamctl.tunnel.engine import Tunnel, TunnelThread
from streamctl.tunnel.splice import MAX_PREFIX
from tests.harness.kafka import KafkaCluster
from tests.policy.grants import make_grant
from tests.tunnel.test_hooks import Recorder, UpperMasker, raw_fetch


def fetch_observed(kafka: KafkaCluster, topic: str, recorder: Recorder) -> tuple[bytes, Any]:
    """One raw Fetch v4 through a tunnel that has only an observer: the answer the client
    got, and its decoded partition 0."""
    grant = make_grant(topics=(topic,), ops=("read",), bootstrap=kafka.bootstrap)
    with TunnelThread(Tunnel(grant, None, observer=recorder)) as t:
        assert t.bootstrap is not None
        answer = raw_fetch(t.bootstrap, topic)
    body = decode_response(ApiKey.FETCH, 4, answer, response_body_offset(answer, 0))
    return answer, body.responses[0].partitions[0]


def test_relayed_fetch_is_described_as_the_client_got_it(
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
    _answer, sent = fetch_observed(kafka, unique_topic, recorder)
    assert sent.error_code == 0 and b"value 4" in sent.records
    with recorder.lock:
        fetched = [f for f in recorder.fetched if f[1] == unique_topic]
        described = list(recorder.described)
    assert len(fetched) == 1 and len(described) == 1
    _conn, _topic, partition, records, error_code, counts = fetched[0]
    assert (partition, error_code, counts) == (0, 0, {})
    assert records == b""  # relayed: the observer is told about the bytes, never given them
    part = described[0]
    assert part.records is None and part.undecodable is None
    assert part.records_size == len(sent.records)  # exactly what the client received
    assert part.batches == tuple(iter_batch_headers(sent.records))
    assert part.batches[0].base_offset == 0
    assert sum(b.record_count for b in part.batches) == 5


def test_an_observer_alone_keeps_the_fetch_versions_that_relay() -> None:
    grant = make_grant(topics=("orders",), ops=("read",), bootstrap="127.0.0.1:9")
    observed = Tunnel(grant, None, observer=Recorder())
    masked = Tunnel(grant, None, masker=UpperMasker("orders", "none"), observer=Recorder())
    assert observed.ctx.versions[ApiKey.FETCH][1] == 15  # v16+ answers must be held whole
    assert masked.ctx.versions[ApiKey.FETCH][1] >= 16


def test_an_answer_of_small_batches_is_relayed_whole_and_described(
    kafka: KafkaCluster, unique_topic: str
) -> None:
    """Small batches are read, not spliced: what is read still reaches the client in order
    (in pieces, never all held at once) and the observer gets every batch header."""
    kafka.create_topic(unique_topic)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0,
                         "batch.num.messages": 3})
    for i in range(3000):
        producer.produce(unique_topic, b"small record %05d" % i, partition=0)
        producer.poll(0)
    assert producer.flush(30) == 0
    del producer  # no client left retrying once the test's broker stops
    direct = raw_fetch(kafka.bootstrap, unique_topic)  # what the broker answers by itself
    recorder = Recorder()
    answer, sent = fetch_observed(kafka, unique_topic, recorder)
    records = bytes(sent.records)
    headers = tuple(iter_batch_headers(records))
    assert len(records) > 2 * MAX_PREFIX and len(headers) > 300  # many small batches
    assert answer[4:] == direct[4:]  # byte for byte what the broker gave (bar the id)
    with recorder.lock:
        (part,) = [p for p in recorder.described if p.topic == unique_topic]
    assert part.records is None and part.batches == headers
    assert part.records_size == len(records)
