"""Issue 4, must-show 1: real clients through the tunnel against the three-node cluster.

kafka-python, confluent-kafka (librdkafka), kcat and the Java console tools produce and consume
through the tunnel; consumer groups join, commit and rebalance; confluent-kafka transactions
commit and abort; and a broker is stopped mid-run without any client learning a real address.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer

from tests.harness.kafka import KafkaCluster
from tests.tunnel.helpers import tunnel_for

pytestmark = pytest.mark.cluster

OPS = ("read", "write", "describe")


def real_ports(cluster: KafkaCluster) -> set[int]:
    return {int(a.rpartition(":")[2]) for a in cluster.bootstrap.split(",")}


def confluent_consume(bootstrap: str, topic: str, group: str, expect: int,
                      **extra: object) -> list[bytes]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
        **extra,
    })
    got: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(got) < expect and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append(msg.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


@pytest.fixture
def topic(kafka_cluster: KafkaCluster, unique_topic: str) -> Iterator[str]:
    kafka_cluster.create_topic(unique_topic, partitions=3, replication=3)
    yield unique_topic


def test_clients_produce_and_consume_through_the_tunnel(
    kafka_cluster: KafkaCluster, topic: str
) -> None:
    with tunnel_for(kafka_cluster, topics=(topic,), ops=OPS) as t:
        bootstrap = t.bootstrap
        # kafka-python
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        for i in range(200):
            producer.send(topic, key=str(i).encode(), value=f"kp-{i}".encode())
        producer.flush(30)
        producer.close(5)
        # confluent-kafka, idempotent
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                      "broker.address.family": "v4"})
        for i in range(200):
            p.produce(topic, key=str(i).encode(), value=f"ck-{i}".encode())
        assert p.flush(30) == 0
        # kcat, with acks=0 for part of it (no responses expected)
        lines = "\n".join(f"kcat-{i}" for i in range(100)) + "\n"
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic], input=lines.encode(),
                       check=True, timeout=60)
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-X", "acks=0"],
                       input=b"acks0-a\nacks0-b\n", check=True, timeout=60)

        # kcat consumes everything
        out = subprocess.run(
            ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q"],
            capture_output=True, check=True, timeout=60,
        ).stdout.decode().split("\n")
        values = {v for v in out if v}
        assert {f"kp-{i}" for i in range(200)} <= values
        assert {f"ck-{i}" for i in range(200)} <= values
        assert {f"kcat-{i}" for i in range(100)} <= values
        # acks=0 gives no delivery guarantee, but on a healthy cluster both arrive
        assert {"acks0-a", "acks0-b"} <= values

        # kcat -L lists only the tunnel's listeners
        listing = subprocess.run(["kcat", "-L", "-b", bootstrap], capture_output=True,
                                 check=True, timeout=60).stdout.decode()
        assert "3 brokers" in listing
        for port in real_ports(kafka_cluster):
            assert f":{port}" not in listing

        # confluent-kafka consumer group, commit, and the committed offsets are real
        group = f"g-{uuid.uuid4().hex[:6]}"
        got = confluent_consume(bootstrap, topic, group, 502)
        assert len(got) == 502
        check = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                          "broker.address.family": "v4"})
        try:
            committed = check.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
        finally:
            check.close()
        assert sum(tp.offset for tp in committed) == 502
        assert t.tunnel.stats.requests_refused == 0


def test_consumer_group_rebalances_when_a_second_member_joins(
    kafka_cluster: KafkaCluster, topic: str
) -> None:
    with tunnel_for(kafka_cluster, topics=(topic,), ops=OPS) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap)
        for i in range(300):
            producer.send(topic, f"m-{i}".encode(), partition=i % 3)
        producer.flush(30)
        producer.close(5)

        group = f"g-{uuid.uuid4().hex[:6]}"
        settings = {"bootstrap_servers": t.bootstrap, "group_id": group,
                    "auto_offset_reset": "earliest", "enable_auto_commit": False,
                    "session_timeout_ms": 10000, "heartbeat_interval_ms": 1000}
        first = KafkaConsumer(topic, **settings)
        second = None
        try:
            seen: set[bytes] = set()
            deadline = time.monotonic() + 60
            while len(first.assignment()) < 3 and time.monotonic() < deadline:
                for records in first.poll(timeout_ms=500, max_records=20).values():
                    seen.update(r.value for r in records)
            assert len(first.assignment()) == 3
            first.commit()

            second = KafkaConsumer(topic, **settings)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for consumer in (first, second):
                    for records in consumer.poll(timeout_ms=300).values():
                        seen.update(r.value for r in records)
                if second.assignment() and len(first.assignment()) < 3 and len(seen) >= 300:
                    break
            split = (len(first.assignment()), len(second.assignment()))
            assert sorted(split) == [1, 2], split
            assert seen == {f"m-{i}".encode() for i in range(300)}
            first.commit()
            second.commit()
        finally:
            first.close()
            if second is not None:
                second.close()


def test_confluent_kafka_transactions(kafka_cluster: KafkaCluster, topic: str) -> None:
    with tunnel_for(kafka_cluster, topics=(topic,), ops=OPS, groups=("tx-*", "g-*")) as t:
        p = Producer({"bootstrap.servers": t.bootstrap, "transactional.id": "tx-" + topic,
                      "broker.address.family": "v4"})
        p.init_transactions(30)
        # the aborted transaction comes first, so a read_committed reader must skip it
        p.begin_transaction()
        for i in range(50):
            p.produce(topic, f"aborted-{i}".encode())
        p.abort_transaction(30)
        p.begin_transaction()
        for i in range(50):
            p.produce(topic, f"committed-{i}".encode())
        p.commit_transaction(30)

        got = confluent_consume(t.bootstrap, topic, "g-" + topic, 50,
                                **{"isolation.level": "read_committed"})
        assert sorted(got) == sorted(f"committed-{i}".encode() for i in range(50))
        assert t.tunnel.stats.requests_refused == 0


def test_leader_change_mid_run_without_learning_real_addresses(
    kafka_cluster: KafkaCluster, topic: str
) -> None:
    probe = kafka_cluster.admin()
    try:
        leader = next(
            p["leader_id"] for d in probe.describe_topics([topic]) for p in d["partitions"]
            if p["partition_index"] == 0
        )
    finally:
        probe.close()
    delivered: list[str] = []
    failed: list[str] = []

    def on_delivery(err: object, msg: object) -> None:
        (failed if err else delivered).append(str(err) if err else "ok")

    with tunnel_for(kafka_cluster, topics=(topic,), ops=OPS) as t:
        p = Producer({"bootstrap.servers": t.bootstrap, "broker.address.family": "v4",
                      "enable.idempotence": True, "message.timeout.ms": 60000})
        try:
            for i in range(100):
                p.produce(topic, f"before-{i}".encode(), partition=0, on_delivery=on_delivery)
            assert p.flush(30) == 0
            kafka_cluster.stop_node(leader)
            for i in range(100):
                p.produce(topic, f"after-{i}".encode(), partition=0, on_delivery=on_delivery)
                p.poll(0)
                time.sleep(0.01)
            assert p.flush(90) == 0
            assert len(delivered) == 200 and not failed
            seen = p.list_topics(timeout=30)
            ports = {b.port for b in seen.brokers.values()}
            assert ports and not ports & real_ports(kafka_cluster)
            assert seen.topics[topic].partitions[0].leader != leader
        finally:
            kafka_cluster.start_node(leader)
        values = [
            v.decode() for v in confluent_consume(t.bootstrap, topic, f"g-{uuid.uuid4().hex}",
                                                  200)
        ]
        assert {f"after-{i}" for i in range(100)} <= set(values)


def test_java_console_tools_through_the_tunnel(
    kafka_cluster: KafkaCluster, topic: str, kafka_tools
) -> None:
    with tunnel_for(kafka_cluster, topics=(topic,), ops=OPS) as t:
        lines = [f"java-{i}" for i in range(50)]
        kafka_tools.console_producer(t.bootstrap, topic, lines, extra_props={"acks": "all"})
        got = kafka_tools.console_consumer(
            t.bootstrap, topic, 50, extra_props={"group.id": f"g-{uuid.uuid4().hex[:6]}"},
            timeout=90,
        )
        assert sorted(got) == sorted(lines)
        assert t.tunnel.stats.requests_refused == 0
        assert t.tunnel.stats.connection_errors == 0
