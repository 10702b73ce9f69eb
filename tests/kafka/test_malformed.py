"""Malformed input never escapes as anything but a typed protocol error (issue 3, must-show 3).

Truncated frames, flipped bytes and plain random bytes go through every entry point the
tunnel uses: framing, headers, summaries, refusals, response decoding and rewriting.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamctl.kafka import error_codes
from streamctl.kafka.apis import ApiKey
from streamctl.kafka.errors import BrokerProtocolError, ClientProtocolError, KafkaProtocolError
from streamctl.kafka.framing import FrameBuffer
from streamctl.kafka.headers import encode_request_header, encode_response_header
from streamctl.kafka.messages import decode_response, encode_request, encode_response
from streamctl.kafka.refusals import refusal_response
from streamctl.kafka.rewrite import rewrite_addresses, rewrite_metadata
from streamctl.kafka.summary import summarize
from streamctl.kafka.versions import SUPPORTED_VERSIONS, clamp_api_versions
from tests.kafka.schema_strategies import message_strategy

KEYS = [int(k) for k in ApiKey]
FUZZ_ROUNDS = 3000


def _local(node: int, host: str, port: int) -> tuple[str, int]:
    return "127.0.0.1", 1


@st.composite
def request_frames(draw: st.DrawFn) -> tuple[int, int, bytes]:
    key = draw(st.sampled_from(KEYS))
    low, high = SUPPORTED_VERSIONS[key]
    version = draw(st.integers(low, high))
    message = draw(message_strategy(key, True, version))
    if key == ApiKey.PRODUCE:
        message.acks = -1
    header = encode_request_header(key, version, 1, "fuzz")
    return key, len(header), header + encode_request(key, version, message)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=request_frames(), data=st.data())
def test_truncated_requests_are_client_errors(case: tuple[int, int, bytes], data: st.DataObject) -> None:
    _key, _header_size, frame = case
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ClientProtocolError):
        summarize(frame[:cut])
    with pytest.raises(ClientProtocolError):
        refusal_response(frame[:cut], error_codes.TOPIC_AUTHORIZATION_FAILED)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=request_frames(), data=st.data())
def test_corrupted_requests_only_raise_typed_errors(case: tuple[int, int, bytes], data: st.DataObject) -> None:
    _key, _header_size, frame = case
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    try:
        summarize(bytes(mutated))
        refusal_response(bytes(mutated), error_codes.POLICY_VIOLATION, "fuzz")
    except ClientProtocolError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_responses_only_raise_broker_errors(data: st.DataObject) -> None:
    key = data.draw(st.sampled_from([int(ApiKey.METADATA), int(ApiKey.FIND_COORDINATOR),
                                     int(ApiKey.DESCRIBE_CLUSTER), int(ApiKey.PRODUCE),
                                     int(ApiKey.FETCH), int(ApiKey.API_VERSIONS)]))
    low, high = SUPPORTED_VERSIONS[key]
    version = data.draw(st.integers(low, high))
    body = encode_response(key, version, data.draw(message_strategy(key, False, version)))
    frame = bytearray(encode_response_header(5, 1 if key != ApiKey.API_VERSIONS and version >= 9 else 0) + body)
    for _ in range(data.draw(st.integers(0, 3))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    try:
        if key == ApiKey.API_VERSIONS:
            clamp_api_versions(bytes(frame[:cut]), version)
        else:
            rewrite_addresses(key, version, bytes(frame[:cut]), _local)
    except BrokerProtocolError:
        pass


def test_random_bytes_fuzz_fixed_count() -> None:
    rng = random.Random(20261129)  # fixed seed: the same inputs every run
    typed = 0
    for i in range(FUZZ_ROUNDS):
        size = rng.choice([0, 1, 3, 9, 14, 30, 64, 200])
        blob = rng.randbytes(size)
        if i % 2:  # a plausible header in front of random bytes reaches the body decoders
            key = rng.choice(KEYS)
            low, high = SUPPORTED_VERSIONS[key]
            blob = encode_request_header(key, rng.randint(low, high), i, "fz") + blob
        try:
            summarize(blob)
        except ClientProtocolError:
            typed += 1
        try:
            refusal_response(blob, error_codes.TOPIC_AUTHORIZATION_FAILED)
        except ClientProtocolError:
            pass
        key = rng.choice(KEYS)
        low, high = SUPPORTED_VERSIONS[key]
        try:
            decode_response(key, rng.randint(low, high), blob)
        except BrokerProtocolError:
            pass
        try:
            rewrite_metadata(blob, rng.randint(0, 13), _local, lambda t: False, all_topics=True)
        except BrokerProtocolError:
            pass
        frames = FrameBuffer(max_frame_size=1024, peer="client" if i % 3 else "broker")
        try:
            frames.feed(blob)
            while frames.next_frame() is not None:
                pass
        except KafkaProtocolError:
            pass
    assert typed > FUZZ_ROUNDS // 2  # most random inputs really are rejected


@pytest.mark.parametrize("count", [2**31 - 1, 10**9, 1 << 20])
def test_huge_array_counts_in_every_request_array_fail_fast(count: int) -> None:
    # Produce v9 (flexible) and v3 (classic): a topic array announcing `count` entries.
    flexible = encode_request_header(0, 9, 1, "x") + b"\x00" + struct.pack(">hi", 1, 1000)
    varint = bytearray()
    n = count + 1
    while n >= 0x80:
        varint.append((n & 0x7F) | 0x80)
        n >>= 7
    varint.append(n)
    with pytest.raises(ClientProtocolError, match="array claims"):
        summarize(flexible + bytes(varint) + b"\x00")
    classic = encode_request_header(0, 3, 1, "x") + struct.pack(">hhii", -1, 1, 1000, count)
    with pytest.raises(ClientProtocolError, match="array claims"):
        summarize(classic)


def test_huge_string_and_bytes_lengths_fail_fast() -> None:
    frame = encode_request_header(0, 3, 1, "x") + struct.pack(">hhii", -1, 1, 1000, 1)
    frame += struct.pack(">h", 5) + b"topic" + struct.pack(">i", 1) + struct.pack(">ii", 0, 2**31 - 1)
    with pytest.raises(ClientProtocolError, match=r"bytes needs 2147483647 bytes"):
        summarize(frame)
