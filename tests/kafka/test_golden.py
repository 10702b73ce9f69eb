"""Golden tests on real traffic (issue 3, must-show 1).

kafka-python, confluent-kafka (librdkafka), kcat and the Java console tools talk to the real
broker through `RecordingProxy`; every frame they exchanged must decode with streamctl's
core and re-encode to the very same bytes, and every request must summarize and have a
refusal that the matching kafka-python response class can read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from streamctl.kafka import error_codes
from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.headers import response_body_offset, response_header_version
from streamctl.kafka.messages import (
    decode_body_prefix,
    decode_response,
    encode_request,
    encode_response,
)
from streamctl.kafka.refusals import refusal_response
from streamctl.kafka.rewrite import carries_addresses, rewrite_addresses, rewrite_metadata
from streamctl.kafka.summary import decode_request_frame, summarize
from streamctl.kafka.versions import SUPPORTED_VERSIONS
from tests.harness.kafka import KafkaCluster
from tests.harness.tools import KafkaTools
from tests.kafka import golden_clients
from tests.kafka.recording_proxy import Exchange, Recording, RecordingProxy

K = ApiKey
CLIENTS = ("kafka-python", "confluent-kafka", "kcat", "java-console")


@pytest.fixture(scope="module")
def recording(kafka: KafkaCluster, kafka_tools: KafkaTools) -> Iterator[Recording]:
    with RecordingProxy(kafka.bootstrap) as proxy:
        base = f"golden-{id(proxy) % 100000}"
        proxy.label = "kafka-python"
        golden_clients.kafka_python_session(proxy.bootstrap, f"{base}-kp")
        proxy.label = "confluent-kafka"
        golden_clients.confluent_session(proxy.bootstrap, f"{base}-ck")
        kafka.create_topic(f"{base}-kcat")
        proxy.label = "kcat"
        golden_clients.kcat_session(proxy.bootstrap, f"{base}-kcat")
        kafka.create_topic(f"{base}-java")
        proxy.label = "java-console"
        golden_clients.java_console_session(proxy.bootstrap, f"{base}-java", kafka_tools)
        yield proxy.recording


def _responses(recording: Recording) -> list[Exchange]:
    return [e for e in recording.exchanges if e.direction == "response" and e.api_key >= 0]


def test_the_proxy_understood_every_frame(recording: Recording) -> None:
    assert recording.errors == []


def test_every_client_produced_and_fetched_through_the_proxy(recording: Recording) -> None:
    seen: dict[str, set[int]] = {label: set() for label in CLIENTS}
    for e in recording.exchanges:
        if e.direction == "request":
            seen[e.label].add(e.api_key)
    for label in CLIENTS:
        assert {K.API_VERSIONS, K.METADATA, K.PRODUCE, K.FETCH} <= seen[label], label
    assert {K.CREATE_TOPICS, K.DESCRIBE_CONFIGS, K.CREATE_PARTITIONS, K.INIT_PRODUCER_ID,
            K.ADD_PARTITIONS_TO_TXN, K.ADD_OFFSETS_TO_TXN, K.TXN_OFFSET_COMMIT, K.END_TXN,
            K.FIND_COORDINATOR, K.JOIN_GROUP, K.SYNC_GROUP, K.OFFSET_COMMIT, K.OFFSET_FETCH,
            K.DESCRIBE_GROUPS, K.LIST_GROUPS, K.DELETE_RECORDS, K.DELETE_TOPICS,
            K.OFFSET_DELETE, K.DELETE_GROUPS, K.ALTER_CONFIGS, K.INCREMENTAL_ALTER_CONFIGS,
            K.DESCRIBE_PRODUCERS, K.LIST_OFFSETS, K.DESCRIBE_CLUSTER} <= seen["kafka-python"]
    assert {K.INIT_PRODUCER_ID, K.JOIN_GROUP, K.OFFSET_COMMIT, K.DESCRIBE_CONFIGS} <= seen["confluent-kafka"]


def test_every_request_summarizes_and_reencodes_byte_identically(recording: Recording) -> None:
    count: Counter[str] = Counter()
    trailing: Counter[tuple[str, int]] = Counter()
    for e in recording.exchanges:
        if e.direction != "request":
            continue
        assert SUPPORTED_VERSIONS[e.api_key][0] <= e.api_version <= SUPPORTED_VERSIONS[e.api_key][1]
        summary = summarize(e.frame)
        assert (summary.api_key, summary.api_version) == (e.api_key, e.api_version)
        header, _ = decode_request_frame(e.frame)
        request_cls = MESSAGE_CLASSES[e.api_key][0]
        message, end = decode_body_prefix(request_cls, e.api_version, e.frame, header.size)
        if end != len(e.frame):  # librdkafka pads some Metadata requests; Kafka ignores it
            trailing[(e.label, e.api_key)] += 1
        assert encode_request(e.api_key, e.api_version, message) == e.frame[header.size:end], (
            e.label, e.api_key, e.api_version)
        count[e.label] += 1
    assert all(count[label] > 5 for label in CLIENTS), count
    assert set(trailing) <= {("confluent-kafka", K.METADATA)}, trailing


def test_every_response_reencodes_byte_identically(recording: Recording) -> None:
    responses = _responses(recording)
    assert len(responses) > 50
    for e in responses:
        offset = response_body_offset(e.frame, response_header_version(e.api_key, e.api_version))
        version = e.api_version
        if e.api_key == K.API_VERSIONS and e.frame[offset:offset + 2] != b"\x00\x00":
            version = 0  # KIP-511 error answers use a v0 body
        message = decode_response(e.api_key, version, e.frame, offset, exact=True)
        assert encode_response(e.api_key, version, message) == e.frame[offset:], (
            e.label, e.api_key, e.api_version)


def test_real_produce_requests_carry_topics_and_acks(recording: Recording) -> None:
    produce = [summarize(e.frame) for e in recording.exchanges
               if e.direction == "request" and e.api_key == K.PRODUCE]
    assert any(not s.expects_response for s in produce)  # the kafka-python acks=0 producer
    assert any(s.transactional_id for s in produce)  # the transactional producer
    assert all(s.topics or s.topic_ids for s in produce)


def test_identity_rewrite_of_real_responses_changes_nothing(recording: Recording) -> None:
    checked = 0
    for e in _responses(recording):
        if carries_addresses(e.api_key, e.api_version):
            assert rewrite_addresses(e.api_key, e.api_version, e.frame,
                                     lambda node, host, port: (host, port)) is None
            checked += 1
    assert checked > 5


def test_refusals_of_real_requests_decode_with_kafka_python(recording: Recording) -> None:
    for e in recording.exchanges:
        if e.direction != "request":
            continue
        payload = refusal_response(e.frame, error_codes.TOPIC_AUTHORIZATION_FAILED, "golden")
        if payload is None:
            assert e.api_key == K.PRODUCE
            continue
        response_cls = MESSAGE_CLASSES[e.api_key][1]
        version = 0 if e.api_key == K.API_VERSIONS else e.api_version
        decoded = response_cls.decode(payload, version=version, header=True)
        assert decoded.header.correlation_id == summarize(e.frame).correlation_id


def test_metadata_filtering_of_real_answers(recording: Recording) -> None:
    checked = 0
    for e in _responses(recording):
        if e.api_key != K.METADATA:
            continue
        offset = response_body_offset(e.frame, response_header_version(e.api_key, e.api_version))
        before = decode_response(K.METADATA, e.api_version, e.frame, offset)
        names = [t.name for t in before.topics or () if t.name]
        if not names:
            continue
        keep = names[0]
        for all_topics in (True, False):
            out = rewrite_metadata(e.frame, e.api_version, is_granted=lambda t, k=keep: t == k,
                                   all_topics=all_topics)
            after = decode_response(K.METADATA, e.api_version, out or e.frame, offset)
            kept = [t for t in after.topics if t.name == keep]
            assert kept == [t for t in before.topics if t.name == keep]
            others = [t for t in after.topics if t.name != keep]
            if all_topics:
                assert others == []
            else:
                assert all(t.error_code == error_codes.TOPIC_AUTHORIZATION_FAILED
                           and t.partitions == [] for t in others)
                assert len(after.topics) == len(before.topics)
            assert after.brokers == before.brokers
            checked += 1
    assert checked > 4
