"""Framing: incremental splitting, bounded buffers, and plain-words diagnosis of non-Kafka bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamctl.kafka.errors import (
    BrokerFrameTooLarge,
    BrokerProtocolError,
    ClientProtocolError,
    FrameTooLarge,
    KafkaProtocolError,
)
from streamctl.kafka.framing import FrameBuffer, diagnose_prefix, encode_frame


def test_frames_split_across_reads_come_out_whole() -> None:
    stream = encode_frame(b"first") + encode_frame(b"second-frame") + encode_frame(b"x")
    buf = FrameBuffer()
    got: list[bytes] = []
    for i in range(len(stream)):
        buf.feed(stream[i : i + 1])
        while (frame := buf.next_frame()) is not None:
            got.append(frame)
    assert got == [b"first", b"second-frame", b"x"]
    assert buf.buffered() == 0


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=40),
)
def test_any_chunking_yields_the_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    buf = FrameBuffer(max_frame_size=1000)
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        buf.feed(stream[pos : pos + step])
        pos += step
        i += 1
        while (frame := buf.next_frame()) is not None:
            got.append(frame)
    assert got == frames


def test_tls_client_hello_on_plaintext_port_is_named() -> None:
    buf = FrameBuffer()
    with pytest.raises(FrameTooLarge, match="TLS handshake on a plaintext port"):
        buf.feed(bytes.fromhex("16030100f8010000f40303"))


def test_http_request_is_named() -> None:
    buf = FrameBuffer()
    with pytest.raises(ClientProtocolError, match="HTTP request"):
        buf.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_broker_tls_alert_is_a_broker_error() -> None:
    buf = FrameBuffer(peer="broker")
    with pytest.raises(BrokerProtocolError, match="TLS alert from the broker"):
        buf.feed(bytes.fromhex("15030300020250"))


def test_oversized_frame_raises_before_buffering_it() -> None:
    buf = FrameBuffer(max_frame_size=1024)
    with pytest.raises(FrameTooLarge) as info:
        buf.feed(struct.pack(">i", 1025) + b"\x00" * 10)
    assert info.value.size == 1025
    assert info.value.limit == 1024
    assert info.value.culprit == "client"


def test_oversized_broker_frame_blames_the_broker() -> None:
    buf = FrameBuffer(max_frame_size=1024, peer="broker")
    with pytest.raises(BrokerFrameTooLarge):
        buf.feed(struct.pack(">i", 5000))


@pytest.mark.parametrize("size", [0, -1, -(2**31)])
def test_zero_and_negative_sizes_are_refused(size: int) -> None:
    buf = FrameBuffer()
    with pytest.raises(ClientProtocolError, match="not valid Kafka framing"):
        buf.feed(struct.pack(">i", size))


def test_incomplete_frame_waits_for_more() -> None:
    buf = FrameBuffer()
    buf.feed(struct.pack(">i", 10) + b"abc")
    assert buf.next_frame() is None
    buf.feed(b"defghij")
    assert buf.next_frame() == b"abcdefghij"


def test_buffer_memory_stays_bounded_when_drained() -> None:
    buf = FrameBuffer(max_frame_size=64)
    chunk = encode_frame(b"y" * 60) * 50
    for _ in range(20):
        buf.feed(chunk)
        while buf.next_frame() is not None:
            pass
        assert buf.buffered() == 0
    assert len(buf._buf) <= len(chunk) + 64 + 4


def test_diagnosis_is_none_for_kafka_looking_bytes() -> None:
    assert diagnose_prefix(struct.pack(">i", 120) + b"\x00\x12\x00\x03", "client") is None


def test_errors_share_a_base() -> None:
    assert issubclass(FrameTooLarge, KafkaProtocolError)
    assert issubclass(BrokerFrameTooLarge, BrokerProtocolError)
