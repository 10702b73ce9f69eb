"""Message codec: round-trips across every version, agreement with kafka-python, bounded errors."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.api_message import ApiMessage

from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.errors import BrokerProtocolError, ClientProtocolError
from streamctl.kafka.messages import (
    decode_body,
    decode_request,
    decode_response,
    encode_body,
    encode_request,
)
from tests.kafka.schema_strategies import message_strategy, versions_of

#: Every (api, direction, version) the bundled schemas define for the APIs streamctl reads.
CASES = [
    (int(key), request, version)
    for key in ApiKey
    for request in (True, False)
    for version in versions_of(int(key), request)
]


def _kafka_python_decode(cls: Any, raw: bytes, version: int) -> Any:
    # ApiVersionsResponse.decode forces v0 on errors; call the generic decoder instead.
    return ApiMessage.decode.__func__(cls, raw, version=version)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("api_key", "request_side", "version"),
    CASES,
    ids=[f"{ApiKey(k).name}-{'req' if r else 'resp'}-v{v}" for k, r, v in CASES],
)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_matches_kafka_python(
    api_key: int, request_side: bool, version: int, data: st.DataObject
) -> None:
    cls = MESSAGE_CLASSES[api_key][0 if request_side else 1]
    message = data.draw(message_strategy(api_key, request_side, version), label="message")
    theirs = bytes(message.encode(version=version))
    ours = encode_body(cls, version, message)
    # Both encoders agree unless a tagged field was set to its default (we keep it, they drop it).
    decoded_from_theirs = decode_body(cls, version, theirs)
    assert encode_body(cls, version, decoded_from_theirs) == theirs
    assert decoded_from_theirs == _kafka_python_decode(cls, theirs, version)
    decoded_from_ours = decode_body(cls, version, ours)
    assert encode_body(cls, version, decoded_from_ours) == ours
    assert _kafka_python_decode(cls, ours, version) == decoded_from_theirs


def test_decoded_messages_work_with_kafka_python_methods() -> None:
    cls = MESSAGE_CLASSES[ApiKey.HEARTBEAT][0]
    body = bytes(cls[4](group_id="g", generation_id=3, member_id="m").encode(version=4))
    decoded = decode_request(ApiKey.HEARTBEAT, 4, body)
    assert bytes(decoded.encode(version=4)) == body
    assert decoded.header is None


def test_unknown_tagged_fields_survive_a_round_trip() -> None:
    cls = MESSAGE_CLASSES[ApiKey.METADATA][0]
    body = bytes(cls[12](topics=None, allow_auto_topic_creation=False).encode(version=12))
    assert body.endswith(b"\x00")
    with_tags = body[:-1] + b"\x02" + b"\x05\x02hi" + b"\x09\x00"
    decoded = decode_body(cls, 12, with_tags)
    assert decoded.unknown_tags == {"_5": b"hi", "_9": b""}
    assert encode_body(cls, 12, decoded) == with_tags


def test_huge_array_count_in_a_small_frame_is_refused_before_allocating() -> None:
    # Metadata v1: topics array with count 2**31-1 and nothing after it.
    body = struct.pack(">i", 2**31 - 1)
    with pytest.raises(ClientProtocolError, match="array claims 2147483647 entries"):
        decode_request(ApiKey.METADATA, 1, body)


def test_huge_compact_array_count_is_refused() -> None:
    body = b"\xff\xff\xff\xff\x07" + b"\x00"
    with pytest.raises(ClientProtocolError, match="array claims"):
        decode_request(ApiKey.METADATA, 12, body)


def test_overlong_varint_is_refused() -> None:
    with pytest.raises(ClientProtocolError, match="varint longer than 5 bytes"):
        decode_request(ApiKey.METADATA, 12, b"\xff" * 8)


def test_truncated_string_names_the_field() -> None:
    body = struct.pack(">i", 1) + struct.pack(">h", 40) + b"short"
    with pytest.raises(ClientProtocolError, match=r"topics: .*string needs 40 bytes"):
        decode_request(ApiKey.METADATA, 1, body)


def test_trailing_bytes_are_refused_only_when_exact() -> None:
    body = encode_request(ApiKey.HEARTBEAT, 0, MESSAGE_CLASSES[ApiKey.HEARTBEAT][0][0](
        group_id="g", generation_id=1, member_id="m"))
    with pytest.raises(ClientProtocolError, match="unexpected bytes"):
        decode_request(ApiKey.HEARTBEAT, 0, body + b"\x00", exact=True)
    # Like Kafka itself, the default is to act on the body and ignore what follows it.
    assert decode_request(ApiKey.HEARTBEAT, 0, body + b"\x00").group_id == "g"



def test_response_errors_blame_the_broker() -> None:
    with pytest.raises(BrokerProtocolError, match="broker sent a malformed Metadata v1 response"):
        decode_response(ApiKey.METADATA, 1, b"\x00\x00")


def test_versions_beyond_the_schema_are_refused() -> None:
    with pytest.raises(ClientProtocolError, match="beyond what streamctl can parse"):
        decode_request(ApiKey.METADATA, 99, b"")


def test_unknown_api_is_refused() -> None:
    with pytest.raises(ClientProtocolError, match="does not understand"):
        decode_request(68, 0, b"")
