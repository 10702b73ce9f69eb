"""The harness brokers carry real traffic: 1000 records each way with two Python clients."""

from __future__ import annotations

import confluent_kafka
import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.harness.kafka import KafkaCluster

RECORDS = 1000


def _payloads(topic: str) -> list[bytes]:
    return [f"{topic}:{i}".encode() for i in range(RECORDS)]


def produce_consume_kafka_python(cluster: KafkaCluster, topic: str) -> None:
    """Write and read back RECORDS values with kafka-python, in order per partition."""
    cluster.create_topic(topic, partitions=3, replication=len(cluster.nodes))
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", linger_ms=5)
    try:
        for i, value in enumerate(_payloads(topic)):
            producer.send(topic, key=str(i).encode(), value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=cluster.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    try:
        seen = []
        for message in consumer:
            seen.append(message.value)
            if len(seen) == RECORDS:
                break
    finally:
        consumer.close()
    assert sorted(seen) == sorted(_payloads(topic))


def produce_consume_confluent(cluster: KafkaCluster, topic: str) -> None:
    """Write and read back RECORDS values with confluent-kafka (librdkafka), in a group."""
    cluster.create_topic(topic, partitions=3, replication=len(cluster.nodes))
    producer = confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    errors: list[object] = []

    def on_delivery(error: object, message: object) -> None:
        if error is not None:
            errors.append(error)

    for i, value in enumerate(_payloads(topic)):
        producer.produce(topic, key=str(i).encode(), value=value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        seen: list[bytes] = []
        for _ in range(600):
            if len(seen) == RECORDS:
                break
            for message in consumer.consume(num_messages=500, timeout=0.2):
                assert message.error() is None, message.error()
                value = message.value()
                assert value is not None
                seen.append(value)
    finally:
        consumer.close()
    assert sorted(seen) == sorted(_payloads(topic))


def test_kafka_python_single_node(kafka: KafkaCluster, unique_topic: str) -> None:
    produce_consume_kafka_python(kafka, unique_topic)


def test_confluent_kafka_single_node(kafka: KafkaCluster, unique_topic: str) -> None:
    produce_consume_confluent(kafka, unique_topic)


def test_single_node_shape(kafka: KafkaCluster) -> None:
    assert kafka.nodes == [1]
    host, port = kafka.bootstrap.split(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert kafka.log_path.exists()
    assert "Kafka Server started" in kafka.log_path.read_text()


@pytest.mark.cluster
def test_kafka_python_cluster(kafka_cluster: KafkaCluster, unique_topic: str) -> None:
    produce_consume_kafka_python(kafka_cluster, unique_topic)


@pytest.mark.cluster
def test_confluent_kafka_cluster(kafka_cluster: KafkaCluster, unique_topic: str) -> None:
    produce_consume_confluent(kafka_cluster, unique_topic)


def _leader_of(cluster: KafkaCluster, topic: str) -> int:
    admin = cluster.admin()
    try:
        (description,) = admin.describe_topics([topic])
    finally:
        admin.close()
    (partition,) = description["partitions"]
    return int(partition["leader_id"])


@pytest.mark.cluster
def test_cluster_leader_moves_when_its_node_stops(
    kafka_cluster: KafkaCluster, unique_topic: str
) -> None:
    kafka_cluster.create_topic(unique_topic, partitions=1, replication=3)
    leader = _leader_of(kafka_cluster, unique_topic)
    assert leader in kafka_cluster.nodes
    kafka_cluster.stop_node(leader)
    try:
        new_leader = _leader_of(kafka_cluster, unique_topic)
        assert new_leader in kafka_cluster.nodes and new_leader != leader
        producer = KafkaProducer(bootstrap_servers=kafka_cluster.bootstrap, acks="all")
        try:
            metadata = producer.send(unique_topic, b"after-failover").get(timeout=30)
        finally:
            producer.close()
        assert metadata.offset == 0
    finally:
        kafka_cluster.start_node(leader)
    assert leader in kafka_cluster.live_brokers()
