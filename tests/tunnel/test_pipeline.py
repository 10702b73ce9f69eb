"""Pipelined requests get answers in request order, local refusals included; acks=0 gets none."""

from __future__ import annotations

import socket
import struct
import threading
import time

from kafka import KafkaProducer

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.framing import encode_frame
from streamctl.kafka.headers import response_body_offset
from streamctl.kafka.messages import decode_response
from streamctl.kafka.versions import SUPPORTED_VERSIONS
from streamctl.tunnel.direct import UNSENT_BYTES
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


def fetch(topic: str, corr: int) -> bytes:
    return request_frame(
        ApiKey.FETCH, 4, corr, replica_id=-1, max_wait_ms=100, min_bytes=1,
        max_bytes=1 << 20, isolation_level=0,
        topics=[{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                                 "partition_max_bytes": 1 << 20}]}],
    )


def test_a_client_that_does_not_read_stops_the_fetches(kafka, unique_topic) -> None:
    """Backpressure end to end: the tunnel never buffers more than a bounded window."""
    kafka.create_topic(unique_topic)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=20,
                             max_request_size=4 << 20)
    for _ in range(3 * 1024):
        producer.send(unique_topic, b"x" * 1024, partition=0)
    producer.flush(60)
    producer.close(5)
    requests = 120  # 120 answers of ~1 MB each if nothing held them back
    with tunnel_for(kafka, {"max_in_flight": 16}, topics=(unique_topic,), ops=("read",)) as t:
        with socket.create_connection(split_address(t.bootstrap), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sender = threading.Thread(
                target=lambda: sock.sendall(b"".join(encode_frame(fetch(unique_topic, c))
                                                     for c in range(requests))),
                daemon=True,
            )
            sender.start()
            time.sleep(3)
            stats = t.tunnel.stats
            # a slow reader holds the tunnel to the window: in-flight cap plus socket buffers
            # (the client socket may hold UNSENT_BYTES unsent: a few ~1 MB answers more)
            assert stats.requests_allowed <= 16 + 2 + UNSENT_BYTES // 2**20, stats
            assert stats.bytes_to_clients < 40 * 2**20, stats
            order = [struct.unpack_from(">i", read_frame(sock))[0] for _ in range(requests)]
            sender.join(30)
        assert order == list(range(requests))
        assert t.tunnel.stats.requests_allowed == requests
