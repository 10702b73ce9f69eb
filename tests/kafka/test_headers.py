"""Request and response headers across versions, including the ApiVersions special case."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.errors import BrokerProtocolError, ClientProtocolError
from streamctl.kafka.headers import (
    correlation_id_of_response,
    encode_request_header,
    encode_response_header,
    parse_request_header,
    request_header_version,
    response_body_offset,
    response_header_version,
)

KEYS_AND_VERSIONS = [
    (int(key), version)
    for key, (req, _resp) in MESSAGE_CLASSES.items()
    for version in range(int(req.max_version) + 1)
]


@settings(max_examples=150, deadline=None)
@given(
    key_version=st.sampled_from(KEYS_AND_VERSIONS),
    correlation_id=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    client_id=st.none() | st.text(max_size=40),
    body=st.binary(max_size=20),
)
def test_request_header_round_trips(
    key_version: tuple[int, int], correlation_id: int, client_id: str | None, body: bytes
) -> None:
    key, version = key_version
    raw = encode_request_header(key, version, correlation_id, client_id)
    header = parse_request_header(raw + body)
    assert (header.api_key, header.api_version) == (key, version)
    assert header.correlation_id == correlation_id
    assert header.client_id == client_id
    assert header.size == len(raw)


@settings(max_examples=60, deadline=None)
@given(key_version=st.sampled_from(KEYS_AND_VERSIONS), correlation_id=st.integers(0, 2**31 - 1))
def test_our_request_header_matches_kafka_python(key_version: tuple[int, int], correlation_id: int) -> None:
    key, version = key_version
    req_cls = MESSAGE_CLASSES[key][0]
    msg = req_cls[version]()
    msg.with_header(correlation_id=correlation_id, client_id="golden")
    theirs = msg.encode_header(flexible=req_cls.flexible_version_q(version))
    assert encode_request_header(key, version, correlation_id, "golden") == theirs


def test_request_header_versions_follow_flexibility() -> None:
    assert request_header_version(ApiKey.METADATA, 8) == 1
    assert request_header_version(ApiKey.METADATA, 9) == 2
    assert request_header_version(ApiKey.SASL_HANDSHAKE, 1) == 1
    assert response_header_version(ApiKey.FETCH, 11) == 0
    assert response_header_version(ApiKey.FETCH, 12) == 1


def test_api_versions_response_header_is_always_v0() -> None:
    for version in range(5):
        assert response_header_version(ApiKey.API_VERSIONS, version) == 0
    assert request_header_version(ApiKey.API_VERSIONS, 3) == 2


def test_flexible_header_tagged_fields_are_skipped() -> None:
    fixed = struct.pack(">hhih", 3, 12, 7, 2) + b"id"
    tagged = b"\x01" + b"\x05" + b"\x02" + b"zz"
    header = parse_request_header(fixed + tagged + b"BODY")
    assert header.size == len(fixed) + len(tagged)


def test_response_header_offsets() -> None:
    assert correlation_id_of_response(encode_response_header(42, 0)) == 42
    assert response_body_offset(encode_response_header(9, 1) + b"body", 1) == 5
    assert response_body_offset(encode_response_header(9, 0) + b"body", 0) == 4


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"\x00\x03", "too short"),
        (struct.pack(">hhih", 0x4745, 0x5420, 1, -1), "probably not Kafka"),
        (struct.pack(">hhih", -3, 0, 1, -1), "negative"),
        (struct.pack(">hhih", 3, 1, 1, 50) + b"abc", "client id claims 50"),
        (struct.pack(">hhih", 3, 1, 1, -7), "client id length -7"),
        (struct.pack(">hhih", 3, 1, 1, 2) + b"\xff\xfe", "not UTF-8"),
        (struct.pack(">hhih", 3, 12, 1, -1) + b"\xff\xff\xff\xff\xff\xff", "varint"),
        (struct.pack(">hhih", 3, 12, 1, -1) + b"\x01\x00\x09", "tagged field"),
    ],
)
def test_malformed_request_headers_raise_client_errors(frame: bytes, match: str) -> None:
    with pytest.raises(ClientProtocolError, match=match):
        parse_request_header(frame)


def test_short_response_blames_broker() -> None:
    with pytest.raises(BrokerProtocolError):
        correlation_id_of_response(b"\x00")
    with pytest.raises(BrokerProtocolError):
        response_body_offset(b"\x00\x00\x00\x01\x05", 1)
