"""The masking and transcript plug points: what the engine hands them, and failing closed.

The masker here is a small real implementation of the RecordMasker protocol (it upper-cases
record values through the records codec); the masking package plugs in the same way.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Mapping

from kafka import KafkaConsumer, KafkaProducer

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.fetch_stream import FetchedPartition
from streamctl.kafka.framing import encode_frame
from streamctl.kafka.headers import response_body_offset
from streamctl.kafka.messages import decode_response
from streamctl.kafka.records import decode_batches, encode_batch
from streamctl.kafka.summary import RequestSummary
from streamctl.policy.decision import Verdict
from streamctl.tunnel.engine import Tunnel, TunnelThread
from streamctl.tunnel.hooks import MASKING_FAILED_ERROR, MaskOutcome
from tests.kafka.builders import request_frame
from tests.policy.grants import make_grant
from tests.tunnel.helpers import read_frame, split_address

SECRET = b"4111-1111-1111-1111"


class UpperMasker:
    """Upper-cases every value of `masked`; refuses (raises) on `broken`."""

    def __init__(self, masked: str, broken: str) -> None:
        self.masked, self.broken = masked, broken
        self.calls = 0

    def needs_masking(self, topic: str) -> bool:
        return topic in (self.masked, self.broken)

    def mask(self, topic: str, partition: int, records: bytes) -> MaskOutcome:
        self.calls += 1
        if topic == self.broken:
            raise ValueError("this partition cannot be masked")
        batches, tail = decode_batches(records)
        out = bytearray()
        changed = 0
        for batch in batches:
            new = [r._replace(value=r.value.upper() if r.value else r.value)
                   for r in batch.records]
            changed += len(new)
            out += encode_batch(dataclasses.replace(batch, records=new))
        return MaskOutcome(bytes(out) + tail, {"upper": changed})


class Recorder:
    """A SessionObserver that keeps every call, for checking what the engine reports."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, RequestSummary, Verdict]] = []
        self.produced: list[tuple[str, str, int, bytes, int, int]] = []
        self.fetched: list[tuple[str, str, int, bytes, int, Mapping[str, int]]] = []
        self.described: list[FetchedPartition] = []
        self.closed: list[tuple[str, str]] = []

    def on_request(self, conn_id: str, summary: RequestSummary, verdict: Verdict) -> None:
        with self.lock:
            self.requests.append((conn_id, summary, verdict))

    def on_produced(self, conn_id: str, topic: str, partition: int, records: bytes,
                    base_offset: int, error_code: int) -> None:
        with self.lock:
            self.produced.append((conn_id, topic, partition, records, base_offset, error_code))

    def on_fetched(self, conn_id: str, topic: str, fetched: FetchedPartition,
                   mask_counts: Mapping[str, int]) -> None:
        with self.lock:
            self.described.append(fetched)
            # the bytes are there only where the tunnel held the answer (to mask it)
            self.fetched.append((conn_id, topic, fetched.partition_index,
                                 fetched.records or b"", fetched.error_code, dict(mask_counts)))

    def on_close(self, conn_id: str, reason: str) -> None:
        with self.lock:
            self.closed.append((conn_id, reason))


def raw_fetch(bootstrap: str, topic: str) -> bytes:
    """One Fetch v4 for partition 0 from offset 0 on the tunnel's node listener; the answer."""
    frame = request_frame(
        ApiKey.FETCH, 4, 3, replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=1 << 20,
        isolation_level=0,
        topics=[{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                                 "partition_max_bytes": 1 << 20}]}],
    )
    with socket.create_connection(split_address(bootstrap), timeout=20) as sock:
        sock.sendall(encode_frame(frame))
        return read_frame(sock)


def test_masker_and_observer_see_what_they_should(kafka, unique_topic) -> None:
    masked, broken, plain = unique_topic + "-m", unique_topic + "-b", unique_topic + "-p"
    for topic in (masked, broken, plain):
        kafka.create_topic(topic)
    masker, recorder = UpperMasker(masked, broken), Recorder()
    grant = make_grant(topics=(unique_topic + "-*",), ops=("read", "write"),
                       bootstrap=kafka.bootstrap)
    with TunnelThread(Tunnel(grant, None, masker=masker, observer=recorder)) as t:
        assert t.bootstrap is not None
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, linger_ms=0)
        for topic in (masked, broken, plain):
            for i in range(3):
                producer.send(topic, b"card " + SECRET + f" #{i}".encode(), partition=0)
        producer.flush(30)
        producer.close(5)

        for topic, expected in ((masked, b"CARD " + SECRET), (plain, b"card " + SECRET)):
            consumer = KafkaConsumer(topic, bootstrap_servers=t.bootstrap,
                                     auto_offset_reset="earliest", consumer_timeout_ms=5000)
            try:
                got = [(m.offset, m.value) for m in consumer]
            finally:
                consumer.close()
            assert [o for o, _ in got] == [0, 1, 2]  # offsets unchanged by masking
            assert all(v.startswith(expected) for _, v in got), got

        # A partition that cannot be masked gets an error and no records, never the raw bytes.
        answer = raw_fetch(t.bootstrap, broken)
        body = decode_response(ApiKey.FETCH, 4, answer, response_body_offset(answer, 0))
        part = body.responses[0].partitions[0]
        assert part.error_code == MASKING_FAILED_ERROR
        assert not part.records
        assert SECRET not in answer
        assert t.tunnel.stats.partitions_mask_failed >= 1

    deadline = time.monotonic() + 5
    while len(recorder.closed) < t.tunnel.stats.connections_total and time.monotonic() < deadline:
        time.sleep(0.05)
    with recorder.lock:
        kinds = {s.name for _, s, v in recorder.requests if v.allowed}
        assert {"Produce", "Fetch", "Metadata", "ApiVersions"} <= kinds
        for topic in (masked, broken, plain):
            mine = sorted((base, records) for _, t_, _p, records, base, err in recorder.produced
                          if t_ == topic and err == 0)
            assert mine[0][0] == 0  # the offsets the broker assigned
            counted = sum(len(b.records) for _base, r in mine for b in decode_batches(r)[0])
            assert counted == 3
        assert all(SECRET in records for *_x, records, _b, _e in recorder.produced)
        sent_masked = [r for _c, topic, _p, r, err, _m in recorder.fetched
                       if topic == masked and r]
        assert sent_masked and all(SECRET.upper() in r or b"CARD" in r for r in sent_masked)
        assert all(b"card " not in r for r in sent_masked)  # bytes as sent: masked
        counts = [m for _c, topic, _p, r, _e, m in recorder.fetched if topic == masked and r]
        assert all(c.get("upper") for c in counts)
        broken_seen = [(r, err) for _c, topic, _p, r, err, _m in recorder.fetched
                       if topic == broken]
        assert broken_seen and all(r == b"" and err == MASKING_FAILED_ERROR
                                   for r, err in broken_seen)
        assert len(recorder.closed) == t.tunnel.stats.connections_total


def session_fetch(sock: socket.socket, topic: str | None, session_id: int, epoch: int) -> object:
    """A Fetch v7 on a fetch session (KIP-227): full when it names the topic, else incremental."""
    topics = [] if topic is None else [
        {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                         "log_start_offset": -1,
                                         "partition_max_bytes": 1 << 20}]}
    ]
    frame = request_frame(
        ApiKey.FETCH, 7, 9, replica_id=-1, max_wait_ms=200, min_bytes=1, max_bytes=1 << 20,
        isolation_level=0, session_id=session_id, session_epoch=epoch, topics=topics,
        forgotten_topics_data=[],
    )
    sock.sendall(encode_frame(frame))
    answer = read_frame(sock)
    assert b"card " not in answer  # never the raw value, whatever the request named
    return decode_response(ApiKey.FETCH, 7, answer, response_body_offset(answer, 0))


def test_incremental_fetch_sessions_are_masked_too(kafka, unique_topic) -> None:
    """An incremental Fetch names no topic but returns data: masking follows the response."""
    kafka.create_topic(unique_topic)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    producer.send(unique_topic, b"card " + SECRET, partition=0).get(timeout=30)
    producer.close(5)
    masker = UpperMasker(unique_topic, "none")
    grant = make_grant(topics=(unique_topic,), ops=("read",), bootstrap=kafka.bootstrap)
    with TunnelThread(Tunnel(grant, None, masker=masker)) as t:
        assert t.bootstrap is not None
        address = split_address(t.bootstrap)
        with socket.create_connection(address, timeout=20) as first:
            full = session_fetch(first, unique_topic, 0, 0)
            session = full.session_id
            assert session != 0
            with socket.create_connection(address, timeout=20) as second:
                for epoch, sock in ((1, first), (2, second)):  # same and another connection
                    body = session_fetch(sock, None, session, epoch)
                    parts = [p for r in body.responses for p in r.partitions]
                    assert parts and all(b"CARD" in p.records for p in parts if p.records)
        assert masker.calls >= 3
