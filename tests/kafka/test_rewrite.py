"""Address rewriting and Metadata filtering: the named fields change, nothing else does."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamctl.kafka import error_codes
from streamctl.kafka.apis import ApiKey
from streamctl.kafka.headers import encode_response_header, response_header_version
from streamctl.kafka.messages import decode_response, encode_response
from streamctl.kafka.rewrite import (
    carries_addresses,
    metadata_topic_ids,
    rewrite_addresses,
    rewrite_metadata,
)
from tests.kafka.builders import message
from tests.kafka.schema_strategies import message_strategy

K = ApiKey


def local(node_id: int, host: str, port: int) -> tuple[str, int]:
    return "127.0.0.1", 40000 + (node_id % 1000)


def _frame(key: int, version: int, body: Any, correlation_id: int = 3) -> bytes:
    return encode_response_header(correlation_id, response_header_version(key, version)) + \
        encode_response(key, version, body)


def _body_offset(key: int, version: int) -> int:
    return 4 if response_header_version(key, version) == 0 else 5


#: (api, versions, where the addressed entries live, the id field) for the property test.
ADDRESSED = [
    (K.METADATA, range(0, 14), lambda b, v: b.brokers or [], "node_id"),
    (K.FIND_COORDINATOR, range(0, 4), lambda b, v: [b], "node_id"),
    (K.FIND_COORDINATOR, range(4, 7), lambda b, v: b.coordinators or [], "node_id"),
    (K.DESCRIBE_CLUSTER, range(0, 3), lambda b, v: b.brokers or [], "broker_id"),
    (K.PRODUCE, range(10, 14), lambda b, v: b.node_endpoints or [], "node_id"),
    (K.FETCH, range(16, 19), lambda b, v: b.node_endpoints or [], "node_id"),
]


@pytest.mark.parametrize(("key", "versions", "entries", "id_field"), ADDRESSED,
                         ids=lambda x: str(x) if isinstance(x, int) else "")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_only_addresses_change(key: int, versions: range, entries: Any, id_field: str,
                               data: st.DataObject) -> None:
    version = data.draw(st.sampled_from(list(versions)))
    body = data.draw(message_strategy(key, False, version))
    frame = _frame(key, version, body)
    out = rewrite_addresses(key, version, frame, local)
    offset = _body_offset(key, version)
    original = decode_response(key, version, frame, offset)
    expected = copy.deepcopy(original)
    changed = False
    for entry in entries(expected, version):
        node_id = getattr(entry, id_field)
        if node_id >= 0:
            new = local(node_id, entry.host, entry.port)
            changed |= new != (entry.host, entry.port)
            entry.host, entry.port = new
    if not changed:
        assert out is None
        return
    assert out is not None
    assert out[:offset] == frame[:offset]
    assert decode_response(key, version, out, offset) == expected


def test_metadata_brokers_point_at_local_listeners() -> None:
    body = message(K.METADATA, 12, request=False, brokers=[
        {"node_id": 1, "host": "kafka-1.internal", "port": 9092, "rack": "r1"},
        {"node_id": 2, "host": "kafka-2.internal", "port": 9092, "rack": None}],
        cluster_id="c", controller_id=1, topics=[])
    out = rewrite_addresses(K.METADATA, 12, _frame(K.METADATA, 12, body), local)
    assert out is not None
    got = decode_response(K.METADATA, 12, out, 5)
    assert [(b.node_id, b.host, b.port, b.rack) for b in got.brokers] == [
        (1, "127.0.0.1", 40001, "r1"), (2, "127.0.0.1", 40002, None)]


def test_unchanged_addresses_mean_forward_as_is() -> None:
    body = message(K.METADATA, 9, request=False, brokers=[
        {"node_id": 1, "host": "127.0.0.1", "port": 40001}], topics=[])
    assert rewrite_addresses(K.METADATA, 9, _frame(K.METADATA, 9, body), local) is None
    assert rewrite_addresses(K.HEARTBEAT, 4, b"\x00\x00\x00\x01\x00\x00\x00", local) is None


def test_unknown_tagged_fields_survive_an_address_rewrite() -> None:
    body = message(K.DESCRIBE_CLUSTER, 0, request=False, cluster_id="c", controller_id=1, brokers=[
        {"broker_id": 7, "host": "b7", "port": 9092, "rack": None}])
    frame = _frame(K.DESCRIBE_CLUSTER, 0, body)
    assert frame.endswith(b"\x00")
    tagged = frame[:-1] + b"\x01\x63\x03abc"  # unknown top-level tag 99
    out = rewrite_addresses(K.DESCRIBE_CLUSTER, 0, tagged, local)
    assert out is not None and out.endswith(b"\x01\x63\x03abc")
    assert decode_response(K.DESCRIBE_CLUSTER, 0, out, 5).brokers[0].port == 40007


def test_find_coordinator_error_answer_is_left_alone() -> None:
    body = message(K.FIND_COORDINATOR, 2, request=False, error_code=15, error_message=None,
                   node_id=-1, host="", port=-1)
    assert rewrite_addresses(K.FIND_COORDINATOR, 2, _frame(K.FIND_COORDINATOR, 2, body), local) is None


def test_produce_and_fetch_without_node_endpoints_are_unchanged() -> None:
    produce = message(K.PRODUCE, 11, request=False, responses=[])
    assert rewrite_addresses(K.PRODUCE, 11, _frame(K.PRODUCE, 11, produce), local) is None
    assert not carries_addresses(K.PRODUCE, 9)
    assert not carries_addresses(K.FETCH, 15)
    assert rewrite_addresses(K.FETCH, 15, b"unparsed", local) is None


def _metadata_with_topics(version: int) -> bytes:
    tid = {name: uuid.uuid5(uuid.NAMESPACE_DNS, name) for name in ("orders", "secret", "__consumer_offsets")}
    topics = [
        {"error_code": 0, "name": name, "topic_id": tid[name], "is_internal": name.startswith("__"),
         "partitions": [{"partition_index": 0, "leader_id": 1, "replica_nodes": [1], "isr_nodes": [1]}]}
        for name in tid
    ]
    body = message(K.METADATA, version, request=False, brokers=[
        {"node_id": 1, "host": "h", "port": 1}], topics=topics)
    return _frame(K.METADATA, version, body)


@pytest.mark.parametrize("version", [1, 9, 12])
def test_all_topics_answer_omits_ungranted_topics(version: int) -> None:
    frame = _metadata_with_topics(version)
    out = rewrite_metadata(frame, version, is_granted=lambda t: t == "orders", all_topics=True)
    assert out is not None
    got = decode_response(K.METADATA, version, out, _body_offset(K.METADATA, version))
    assert [t.name for t in got.topics] == ["orders"]
    assert got.brokers[0].host == "h"  # no address_of given: addresses untouched


@pytest.mark.parametrize("version", [1, 12])
def test_named_ungranted_topics_get_topic_authorization_failed(version: int) -> None:
    frame = _metadata_with_topics(version)
    out = rewrite_metadata(frame, version, local, is_granted=lambda t: t == "orders")
    assert out is not None
    got = decode_response(K.METADATA, version, out, _body_offset(K.METADATA, version))
    by_name = {t.name: t for t in got.topics}
    assert by_name["orders"].error_code == 0
    assert len(by_name["orders"].partitions) == 1
    for name in ("secret", "__consumer_offsets"):
        assert by_name[name].error_code == error_codes.TOPIC_AUTHORIZATION_FAILED
        assert by_name[name].partitions == []
        assert by_name[name].topic_id is None
    assert got.brokers[0].port == 40001


def test_by_id_ungranted_topic_does_not_reveal_its_name() -> None:
    frame = _metadata_with_topics(12)
    secret_id = uuid.uuid5(uuid.NAMESPACE_DNS, "secret")
    out = rewrite_metadata(frame, 12, is_granted=lambda t: t == "orders", requested_ids=[secret_id])
    assert out is not None
    got = decode_response(K.METADATA, 12, out, 5)
    refused = [t for t in got.topics if t.topic_id == secret_id]
    assert len(refused) == 1 and refused[0].name is None
    assert refused[0].error_code == error_codes.TOPIC_AUTHORIZATION_FAILED


def test_metadata_topic_ids_map() -> None:
    ids = metadata_topic_ids(_metadata_with_topics(12), 12)
    assert ids[uuid.uuid5(uuid.NAMESPACE_DNS, "orders")] == "orders"
    assert metadata_topic_ids(_metadata_with_topics(9), 9) == {}
