"""Masking on the wire: real producers, the real broker, consumers reading through the tunnel.

Records with e-mails, card numbers, SSNs, nested arrays, text and binary values are written
straight to the broker under every codec and inside a transaction. kafka-python, confluent-
kafka and kcat then read them through a tunnel running GrantMasker: they see every rule
applied, the same offsets and timestamps as a direct read, and committed offsets work. An
observer keeps the record bytes exactly as the tunnel sent them, and every planted secret is
searched for in them after decompression.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from bench import kafka_python_codecs
from streamctl.kafka.fetch_stream import FetchedPartition
from streamctl.kafka.records import decode_batches
from streamctl.masking import GrantMasker
from streamctl.masking.payload import BINARY_REPLACEMENT
from streamctl.masking.strategies import REDACTED
from streamctl.policy.grant import MaskingRule
from streamctl.tunnel.engine import Tunnel, TunnelThread
from tests.harness.kafka import KafkaCluster
from tests.harness.tools import KafkaTools
from tests.masking.grants import SECRET
from tests.policy.grants import make_grant

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 30


class CapturingObserver:
    """A SessionObserver that keeps the fetched record bytes exactly as sent to the client."""

    def __init__(self) -> None:
        self.fetched: list[bytes] = []
        self.relayed = 0
        self.counts: dict[str, int] = {}

    def on_request(self, conn_id: str, summary: Any, verdict: Any) -> None:
        pass

    def on_produced(self, conn_id: str, topic: str, partition: int, records: bytes,
                    base_offset: int, error_code: int) -> None:
        pass

    def on_fetched(self, conn_id: str, topic: str, fetched: FetchedPartition,
                   mask_counts: Mapping[str, int]) -> None:
        # with a masker every answer is held whole, so the bytes sent are always here
        if fetched.records is None:
            self.relayed += 1
        self.fetched.append(fetched.records or b"")
        for name, n in mask_counts.items():
            self.counts[name] = self.counts.get(name, 0) + n

    def on_close(self, conn_id: str, reason: str) -> None:
        pass


def _card(n: int) -> str:
    digits = f"4{n:014d}"
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def _values(tag: str, planted: list[str]) -> list[bytes]:
    out = []
    for i in range(PER_CODEC):
        email, card, ssn = f"{tag}{i}@corp.example.com", _card(hash((tag, i)) % 10**14), (
            f"{100 + i:03d}-{10 + i % 80:02d}-{1000 + i:04d}")
        planted += [email, card, ssn]
        if i % 5 == 3:
            out.append(f"free text from {email}, card {card}".encode())
        elif i % 5 == 4:
            out.append(b"\xff\xfe\x00" + email.encode())
        else:
            out.append(json.dumps({
                "customer": {"email": email, "ssn": ssn, "name": f"n{i}"},
                "items": [{"card": card, "sku": f"s{i}"}, {"card": card, "sku": "x"}],
                "i": i,
            }).encode())
    return out


def _produce(cluster: KafkaCluster, topic: str, planted: list[str]) -> None:
    for codec in CODECS:
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "compression.type": codec,
                             "linger.ms": 50, "broker.address.family": "v4"})
        for value in _values(codec, planted):
            producer.produce(topic, value, partition=0)
        assert producer.flush(30) == 0
    txn = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": f"tx-{topic}",
                    "compression.type": "zstd", "broker.address.family": "v4"})
    txn.init_transactions(30)
    txn.begin_transaction()
    for value in _values("txn", planted):
        txn.produce(topic, value, partition=0)
    txn.commit_transaction(30)


def _confluent_read(bootstrap: str, topic: str, group: str, expect: int
                    ) -> list[tuple[int, int, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "broker.address.family": "v4"})
    got: list[tuple[int, int, bytes]] = []
    try:
        consumer.subscribe([topic])
        for _ in range(120):
            if len(got) >= expect:
                break
            for message in consumer.consume(500, 1.0):
                if message.error():
                    raise KafkaException(message.error())
                got.append((message.offset(), message.timestamp()[1], message.value() or b""))
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        assert committed[0].offset > got[-1][0]
    finally:
        consumer.close()
    return got


def test_masked_consume_through_the_tunnel(
    kafka: KafkaCluster, kafka_tools: KafkaTools, unique_topic: str
) -> None:
    topic = unique_topic
    kafka.create_topic(topic, partitions=1, replication=1)
    planted: list[str] = []
    _produce(kafka, topic, planted)
    expect = PER_CODEC * (len(CODECS) + 1)
    direct = _confluent_read(kafka.bootstrap, topic, f"direct-{uuid.uuid4().hex[:6]}", expect)
    assert len(direct) == expect

    rules = (
        MaskingRule(topics=(topic,), fields=("customer.email",), strategy="hash", name="email"),
        MaskingRule(topics=(topic,), fields=("customer.ssn",), name="ssn"),
        MaskingRule(topics=(topic,), fields=("items[*].card",), strategy="keep_last",
                    keep_last=4, name="card"),
        MaskingRule(topics=(topic,), detectors=("email", "card", "us_ssn"), name="pii"),
    )
    grant = make_grant(topics=(topic,), ops=("read", "describe"), bootstrap=kafka.bootstrap,
                       masking=rules)
    observer = CapturingObserver()
    tunnel = Tunnel(grant, None, masker=GrantMasker(grant, SECRET), observer=observer)
    with TunnelThread(tunnel) as handle:
        bootstrap = handle.bootstrap or ""
        masked = _confluent_read(bootstrap, topic, f"masked-{uuid.uuid4().hex[:6]}", expect)

        kafka_python_codecs.install()  # kafka-python's own snappy/lz4/zstd framing over cramjam
        group = f"kp-{uuid.uuid4().hex[:6]}"
        kp = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                           auto_offset_reset="earliest", enable_auto_commit=False,
                           isolation_level="read_committed", consumer_timeout_ms=10_000)
        try:
            kp_seen = [(m.offset, m.timestamp, m.value) for m in kp][:expect]
            kp.commit()
            partition = KpTopicPartition(topic, 0)
            # past the last record, and past the transaction's commit marker after it
            assert kp.committed(partition) == kp.position(partition) > kp_seen[-1][0]
        finally:
            kp.close()

        kcat = subprocess.run(
            ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
             "-X", "isolation.level=read_committed", "-f", "%o %T %s\n"],
            capture_output=True, check=True, timeout=60,
        ).stdout
        java_lines = kafka_tools.console_consumer(
            bootstrap, topic, expect, {"isolation.level": "read_committed"},
            formatter_props={"print.offset": "true", "print.timestamp": "true"},
        )
    assert tunnel.stats.partitions_mask_failed == 0

    # same offsets and timestamps as reading directly, for every client
    assert [(o, t) for o, t, _ in masked] == [(o, t) for o, t, _ in direct]
    assert [(o, t) for o, t, _ in kp_seen] == [(o, t) for o, t, _ in direct]
    kcat_lines = [line.split(b" ", 2) for line in kcat.splitlines() if line]
    assert [(int(o), int(t)) for o, t, _ in kcat_lines] == [(o, t) for o, t, _ in direct]
    java = [(int(re.search(r"Offset:(\d+)", line).group(1)),  # type: ignore[union-attr]
             int(re.search(r"CreateTime:(\d+)", line).group(1)),  # type: ignore[union-attr]
             line.rsplit("\t", 1)[-1]) for line in java_lines if "Offset:" in line]
    assert [(o, t) for o, t, _ in java] == [(o, t) for o, t, _ in direct]
    assert [v for _, _, v in java] == [v.decode() for _, _, v in masked]

    # every rule applied
    for (_, _, before), (_, _, after), (_, _, kp_after) in zip(direct, masked, kp_seen,
                                                                strict=True):
        assert after == kp_after
        if before.startswith(b"{"):
            doc, orig = json.loads(after), json.loads(before)
            assert doc["customer"]["email"].startswith("hmac:")
            assert doc["customer"]["ssn"] == REDACTED
            assert [i["card"] for i in doc["items"]] == [
                "*" * 12 + i["card"][-4:] for i in orig["items"]]
            assert doc["i"] == orig["i"]
        elif before.startswith(b"\xff"):
            assert after == BINARY_REPLACEMENT
        else:
            assert after.decode() == f"free text from {REDACTED}, card {REDACTED}"
    assert observer.counts["records_seen"] >= expect

    # no planted secret in any byte the clients were sent (decompressed)
    sent = bytearray(kcat) + "\n".join(java_lines).encode()
    for records in observer.fetched:
        sent += records
        batches, _ = decode_batches(records)
        for batch in batches:
            for record in batch.records:
                sent += (record.key or b"") + (record.value or b"")
    assert observer.fetched and observer.relayed == 0
    leaked = [s for s in planted if s.encode() in sent]
    assert not leaked, f"{len(leaked)} planted secrets reached a client"
