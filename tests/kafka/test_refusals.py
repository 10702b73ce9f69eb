"""Refusals: every understood request, at every supported version, gets a response that
kafka-python's own response class decodes, with the error on every entity the request named."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamctl.kafka import error_codes
from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.headers import encode_request_header, response_header_version
from streamctl.kafka.messages import encode_request
from streamctl.kafka.refusals import BUILDERS, refusal_response
from streamctl.kafka.versions import SUPPORTED_VERSIONS
from tests.kafka.builders import request_frame
from tests.kafka.schema_strategies import message_strategy

K = ApiKey
ERR = error_codes.TOPIC_AUTHORIZATION_FAILED


def _parts(topics: Any, attr: str = "partitions") -> int:
    return sum(len(getattr(t, attr) or ()) for t in topics or ())


def _offset_fetch(r: Any, v: int) -> int:
    if v <= 7:  # v2+ also has a group-level error code
        return (1 if v >= 2 else 0) + _parts(r.topics, "partition_indexes")
    return sum(1 + _parts(g.topics, "partition_indexes") for g in r.groups or ())


def _add_partitions(r: Any, v: int) -> int:
    if v <= 3:
        return _parts(r.v3_and_below_topics)
    return 1 + sum(_parts(t.topics) for t in r.transactions or ())


#: request -> how many error fields in the refusal must carry the error.
EXPECTED: dict[int, Any] = {
    K.PRODUCE: lambda r, v: _parts(r.topic_data, "partition_data"),
    K.FETCH: lambda r, v: _parts(r.topics),
    K.LIST_OFFSETS: lambda r, v: _parts(r.topics),
    K.METADATA: lambda r, v: len(r.topics or ()) + (1 if v >= 13 else 0),
    K.OFFSET_COMMIT: lambda r, v: _parts(r.topics),
    K.OFFSET_FETCH: _offset_fetch,
    K.FIND_COORDINATOR: lambda r, v: 1 if v <= 3 else len(r.coordinator_keys or ()),
    K.JOIN_GROUP: lambda r, v: 1,
    K.HEARTBEAT: lambda r, v: 1,
    K.LEAVE_GROUP: lambda r, v: 1 + (len(r.members or ()) if v >= 3 else 0),
    K.SYNC_GROUP: lambda r, v: 1,
    K.DESCRIBE_GROUPS: lambda r, v: len(r.groups or ()),
    K.LIST_GROUPS: lambda r, v: 1,
    K.SASL_HANDSHAKE: lambda r, v: 1,
    K.API_VERSIONS: lambda r, v: 1,
    K.CREATE_TOPICS: lambda r, v: len(r.topics or ()),
    K.DELETE_TOPICS: lambda r, v: len((r.topic_names if v <= 5 else r.topics) or ()),
    K.DELETE_RECORDS: lambda r, v: _parts(r.topics),
    K.INIT_PRODUCER_ID: lambda r, v: 1,
    K.OFFSET_FOR_LEADER_EPOCH: lambda r, v: _parts(r.topics),
    K.ADD_PARTITIONS_TO_TXN: _add_partitions,
    K.ADD_OFFSETS_TO_TXN: lambda r, v: 1,
    K.END_TXN: lambda r, v: 1,
    K.TXN_OFFSET_COMMIT: lambda r, v: _parts(r.topics),
    K.DESCRIBE_CONFIGS: lambda r, v: len(r.resources or ()),
    K.ALTER_CONFIGS: lambda r, v: len(r.resources or ()),
    K.SASL_AUTHENTICATE: lambda r, v: 1,
    K.CREATE_PARTITIONS: lambda r, v: len(r.topics or ()),
    K.DELETE_GROUPS: lambda r, v: len(r.groups_names or ()),
    K.INCREMENTAL_ALTER_CONFIGS: lambda r, v: len(r.resources or ()),
    K.OFFSET_DELETE: lambda r, v: _parts(r.topics) or 1,
    K.DESCRIBE_CLUSTER: lambda r, v: 1,
    K.DESCRIBE_PRODUCERS: lambda r, v: _parts(r.topics, "partition_indexes"),
}


def _count_errors(obj: Any, err: int) -> int:
    """How many structs in a decoded response hold `err` in an error-code field."""
    if isinstance(obj, list):
        return sum(_count_errors(o, err) for o in obj)
    if not hasattr(obj, "_struct") or obj is None:
        return 0
    count = 0
    for field in obj._struct._fields:
        if obj.version is not None and not field.for_version_q(obj.version):
            continue
        value = getattr(obj, field.name)
        if field.name in ("error_code", "partition_error_code") and value == err:
            count += 1
        elif field.is_struct() or field.is_struct_array():
            count += _count_errors(value, err)
    return count


def test_every_api_has_a_refusal_builder() -> None:
    assert set(BUILDERS) == {int(k) for k in ApiKey}


SUPPORTED_CASES = [
    (key, version)
    for key, (low, high) in sorted(SUPPORTED_VERSIONS.items())
    for version in range(low, high + 1)
]


@pytest.mark.parametrize(("api_key", "version"), SUPPORTED_CASES,
                         ids=[f"{ApiKey(k).name}-v{v}" for k, v in SUPPORTED_CASES])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_refusal_decodes_with_kafka_python_and_names_everything(
    api_key: int, version: int, data: st.DataObject
) -> None:
    request = data.draw(message_strategy(api_key, True, version), label="request")
    if api_key == K.PRODUCE:
        request.acks = 1
    frame = encode_request_header(api_key, version, 1234, "refused") + encode_request(api_key, version, request)
    err = data.draw(st.sampled_from([ERR, error_codes.POLICY_VIOLATION, error_codes.CLUSTER_AUTHORIZATION_FAILED]))
    payload = refusal_response(frame, err, "not in your grant")
    assert payload is not None
    response_cls = MESSAGE_CLASSES[api_key][1]
    buf = io.BytesIO(payload)
    header = response_cls.parse_header(buf, version=version)
    assert header.correlation_id == 1234
    assert buf.tell() == (4 if response_header_version(api_key, version) == 0 else 5)
    response = response_cls.decode(payload[buf.tell():], version=version)
    assert _count_errors(response, err) == EXPECTED[api_key](request, version)


def test_produce_acks_zero_gets_no_refusal() -> None:
    frame = request_frame(K.PRODUCE, 9, acks=0, timeout_ms=1, topic_data=[
        {"name": "t", "partition_data": [{"index": 0, "records": b""}]}])
    assert refusal_response(frame, ERR) is None


def test_produce_refusal_carries_message_and_partitions() -> None:
    frame = request_frame(K.PRODUCE, 9, correlation_id=9, acks=-1, timeout_ms=1, topic_data=[
        {"name": "pay", "partition_data": [{"index": 0, "records": b""}, {"index": 1, "records": b""}]}])
    payload = refusal_response(frame, ERR, "write to pay needs approval")
    assert payload is not None
    response_cls = MESSAGE_CLASSES[K.PRODUCE][1]
    resp = response_cls.decode(payload[5:], version=9)
    parts = resp.responses[0].partition_responses
    assert [(p.index, p.error_code, p.error_message) for p in parts] == [
        (0, ERR, "write to pay needs approval"), (1, ERR, "write to pay needs approval")]
    assert resp.responses[0].name == "pay"


def test_api_versions_unsupported_refusal_is_kip511() -> None:
    frame = request_frame(K.API_VERSIONS, 3, client_software_name="x", client_software_version="1")
    payload = refusal_response(frame, error_codes.UNSUPPORTED_VERSION)
    assert payload is not None
    response_cls = MESSAGE_CLASSES[K.API_VERSIONS][1]
    resp = response_cls.decode(payload[4:], version=0)
    assert resp.error_code == error_codes.UNSUPPORTED_VERSION
    assert [(k.api_key, k.max_version) for k in resp.api_keys] == [(18, SUPPORTED_VERSIONS[18][1])]
