"""Pipelined requests get answers in request order, local refusals included; acks=0 gets none."""

from __future__ import annotations

import socket
import struct

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.framing import encode_frame
from streamctl.kafka.headers import response_body_offset
from streamctl.kafka.messages import decode_response
from streamctl.kafka.versions import SUPPORTED_VERSIONS
from tests.kafka.builders import request_frame
from tests.tunnel.helpers import read_frame, split_address, tunnel_for


def produce(topic: str, acks: int, corr: int) -> bytes:
    return request_frame(
        ApiKey.PRODUCE, 3, corr, acks=acks, timeout_ms=5000, transactional_id=None,
        topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": b""}]}],
    )


def metadata(topic: str, corr: int) -> bytes:
    return request_frame(
        ApiKey.METADATA, 4, corr, topics=[{"name": topic}], allow_auto_topic_creation=False
    )


def test_responses_come_back_in_request_order(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    secret = unique_topic + "-secret"
    with tunnel_for(kafka, topics=(unique_topic,), ops=("read",)) as t:
        frames = [
            request_frame(ApiKey.API_VERSIONS, 0, 10),  # forwarded
            produce(secret, acks=1, corr=11),  # refused locally (outside the grant)
            metadata(unique_topic, 12),  # forwarded
            produce(secret, acks=0, corr=13),  # refused, and acks=0: no answer at all
            metadata(secret, 14),  # forwarded, answer filtered
            request_frame(ApiKey.API_VERSIONS, 0, 15),  # forwarded
        ]
        with socket.create_connection(split_address(t.bootstrap), timeout=20) as sock:
            sock.sendall(b"".join(encode_frame(f) for f in frames))
            answers = [read_frame(sock) for _ in range(5)]
        order = [struct.unpack_from(">i", a)[0] for a in answers]
        assert order == [10, 11, 12, 14, 15]

        refused = decode_response(ApiKey.PRODUCE, 3, answers[1], response_body_offset(answers[1], 0))
        assert refused.responses[0].partition_responses[0].error_code == 29
        hidden = decode_response(ApiKey.METADATA, 4, answers[3], response_body_offset(answers[3], 0))
        assert [(x.name, x.error_code) for x in hidden.topics] == [(secret, 29)]
        shown = decode_response(ApiKey.METADATA, 4, answers[2], response_body_offset(answers[2], 0))
        assert shown.topics[0].error_code == 0
        local_ports = {b.port for b in shown.brokers}
        real_ports = {int(a.rpartition(":")[2]) for a in kafka.bootstrap.split(",")}
        assert local_ports and not local_ports & real_ports


def test_api_versions_are_clamped_and_telemetry_stripped(kafka) -> None:
    with tunnel_for(kafka, topics=("x",), ops=("read",)) as t:
        with socket.create_connection(split_address(t.bootstrap), timeout=20) as sock:
            sock.sendall(encode_frame(request_frame(ApiKey.API_VERSIONS, 3, 1,
                                                    client_software_name="t",
                                                    client_software_version="1")))
            answer = read_frame(sock)
            direct = socket.create_connection(split_address(kafka.bootstrap), timeout=20)
            with direct:
                direct.sendall(encode_frame(request_frame(ApiKey.API_VERSIONS, 3, 1,
                                                          client_software_name="t",
                                                          client_software_version="1")))
                raw = read_frame(direct)
    ours = decode_response(ApiKey.API_VERSIONS, 3, answer, 4)
    theirs = decode_response(ApiKey.API_VERSIONS, 3, raw, 4)
    offered = {k.api_key: (k.min_version, k.max_version) for k in ours.api_keys}
    broker = {k.api_key for k in theirs.api_keys}
    assert not {71, 72} & set(offered)  # KIP-714 telemetry is never offered
    assert set(offered) <= set(SUPPORTED_VERSIONS)
    assert offered[ApiKey.METADATA][0] >= 4
    assert set(offered) < broker


def test_too_new_api_versions_gets_the_kip_511_answer(kafka) -> None:
    with tunnel_for(kafka, topics=("x",), ops=("read",)) as t:
        with socket.create_connection(split_address(t.bootstrap), timeout=20) as sock:
            header = struct.pack(">hhih", 18, 99, 5, 1) + b"t" + b"\x00"  # header v2
            sock.sendall(struct.pack(">i", len(header)) + header)
            answer = read_frame(sock)
    body = decode_response(ApiKey.API_VERSIONS, 0, answer, 4)
    assert struct.unpack_from(">i", answer)[0] == 5
    assert body.error_code == 35
    assert [k.api_key for k in body.api_keys] == [18]
