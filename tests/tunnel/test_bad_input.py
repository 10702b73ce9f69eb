"""Issue 4, must-show 4: bad input is logged in one clear line and never hurts other clients."""

from __future__ import annotations

import logging
import random
import socket
import ssl
import struct
import threading
import time

import psutil
import pytest
from kafka import KafkaProducer

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.framing import encode_frame
from tests.kafka.builders import request_frame
from tests.tunnel.helpers import read_frame, split_address, tunnel_for

LOGGER = "streamctl.tunnel"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


def wait_for_new_warning(caplog: pytest.LogCaptureFixture, before: int) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = warnings_of(caplog)[before:]
        if found:
            time.sleep(0.2)  # a second line for the same connection would show up by now
            return warnings_of(caplog)[before:]
        time.sleep(0.05)
    return []


def connect(bootstrap: str) -> socket.socket:
    return socket.create_connection(split_address(bootstrap), timeout=10)


def send_and_close(bootstrap: str, data: bytes) -> None:
    with connect(bootstrap) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def tls_hello(bootstrap: str) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with connect(bootstrap) as raw, pytest.raises((ssl.SSLError, OSError)):
        ctx.wrap_socket(raw, server_hostname="localhost")


def random_bytes(bootstrap: str) -> None:
    rng = random.Random(4)
    send_and_close(bootstrap, bytes(rng.getrandbits(8) for _ in range(4096)))


def oversized(bootstrap: str) -> None:
    send_and_close(bootstrap, struct.pack(">i", 500 * 1024 * 1024) + b"\0" * 64)


def garbage_frame(bootstrap: str) -> None:
    rng = random.Random(7)
    body = bytes(rng.getrandbits(8) for _ in range(200))
    send_and_close(bootstrap, struct.pack(">i", len(body)) + body)


def mid_request(bootstrap: str) -> None:
    frame = encode_frame(request_frame(ApiKey.API_VERSIONS, 0, 1))
    with connect(bootstrap) as sock:
        sock.sendall(frame[: len(frame) - 3])


def unknown_api(bootstrap: str) -> None:
    header = struct.pack(">hhih", 71, 0, 1, 1) + b"t" + b"\x00" + b"\x00"
    send_and_close(bootstrap, struct.pack(">i", len(header)) + header)


CASES = [
    (tls_hello, "TLS handshake on a plaintext port"),
    (random_bytes, "invalid frame"),
    (oversized, "above the"),
    (garbage_frame, "client sent"),
    (mid_request, "disconnected in the middle of a request"),
    (unknown_api, "does not offer"),
]


def test_bad_input_is_one_log_line_and_others_keep_working(
    kafka, unique_topic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    kafka.create_topic(unique_topic)
    with tunnel_for(kafka, topics=(unique_topic,), ops=("read", "write")) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            producer.send(unique_topic, b"before").get(timeout=30)
            for case, words in CASES:
                before = len(warnings_of(caplog))
                case(t.bootstrap)
                new = wait_for_new_warning(caplog, before)
                assert len(new) == 1, (case.__name__, new)
                assert words in new[0], (case.__name__, new[0])
                # the healthy client on its own connection is not affected
                assert producer.send(unique_topic, case.__name__.encode()).get(timeout=30)
        finally:
            producer.close(timeout=5)
        assert t.tunnel.stats.connection_errors == 0


def test_many_connections_and_bounded_memory(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    process = psutil.Process()
    with tunnel_for(kafka, topics=(unique_topic,), ops=("read", "write")) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            producer.send(unique_topic, b"warm-up").get(timeout=30)
            rss_before = process.memory_info().rss

            # 200 clients at once: each asks ApiVersions, reads the answer, goes away
            answers: list[int] = []
            failures: list[BaseException] = []
            gate = threading.Barrier(200, timeout=60)

            def client(i: int) -> None:
                try:
                    with connect(t.bootstrap) as sock:
                        gate.wait()
                        sock.sendall(encode_frame(request_frame(ApiKey.API_VERSIONS, 0, i)))
                        answers.append(struct.unpack_from(">i", read_frame(sock))[0])
                except BaseException as exc:
                    failures.append(exc)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(90)
            assert not failures, failures[:3]
            assert sorted(answers) == list(range(200))

            # large claimed frames that never complete: memory holds what arrived, not the claim
            for _ in range(20):
                with connect(t.bootstrap) as sock:
                    sock.sendall(struct.pack(">i", 90 * 1024 * 1024) + b"\1" * (1024 * 1024))
            assert producer.send(unique_topic, b"after").get(timeout=30).offset >= 1
            deadline = time.monotonic() + 10
            while t.tunnel.stats.connections_open > 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert t.tunnel.stats.connections_open <= 2  # the producer's own connections
            grown_mb = (process.memory_info().rss - rss_before) / 2**20
            assert grown_mb < 120, f"RSS grew by {grown_mb:.0f} MB"
        finally:
            producer.close(timeout=5)
