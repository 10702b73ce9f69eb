"""Real client sessions for the golden tests: each drives one client through a bootstrap."""

from __future__ import annotations

import socket
import struct
import subprocess
import time

import confluent_kafka
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, NewPartitions
from kafka.admin import NewTopic as KpNewTopic
from kafka.protocol.admin.cluster import DescribeClusterRequest
from kafka.structs import OffsetAndMetadata

from tests.harness.tools import KafkaTools

RECORDS = 30


def describe_cluster_raw(bootstrap: str) -> None:
    """DescribeCluster encoded by kafka-python's own request class over a plain socket.

    No client library here sends DescribeCluster (they describe the cluster with Metadata),
    but its response is the one rewrite must handle; the broker's answer is real.
    """
    host, port = bootstrap.rsplit(":", 1)
    for version in (0, 1, 2):
        request = DescribeClusterRequest[version](include_cluster_authorized_operations=True)
        request.with_header(correlation_id=version + 1, client_id="golden-raw")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(request.encode(header=True, framed=True))
            size = struct.unpack(">i", _read_exactly(sock, 4))[0]
            _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def kafka_python_session(bootstrap: str, topic: str) -> None:
    """Admin, plain and transactional produce (gzip), group consume and commit."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    try:
        admin.create_topics([KpNewTopic(topic, 2, 1)])
        admin.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, topic)])
        admin.create_partitions({topic: NewPartitions(3)})
        admin.describe_cluster()
        describe_cluster_raw(bootstrap)
        admin.list_groups()
        topic_config = KpConfigResource(ConfigResourceType.TOPIC, topic,
                                        configs={"retention.ms": "86400000"})
        admin.alter_configs([topic_config], incremental=True)
        admin.alter_configs([topic_config], incremental=False)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip",
                             linger_ms=5)
    try:
        for i in range(RECORDS):
            producer.send(topic, key=str(i).encode(), value=f'{{"n": {i}}}'.encode(),
                          headers=[("h", b"v")])
        producer.flush(30)
    finally:
        producer.close()
    fire_and_forget = KafkaProducer(bootstrap_servers=bootstrap, acks=0)
    try:
        for i in range(3):
            fire_and_forget.send(topic, value=f"acks0-{i}".encode())
        fire_and_forget.flush(30)
    finally:
        fire_and_forget.close()
    txn = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    try:
        txn.init_transactions()
        txn.begin_transaction()
        for i in range(3):
            txn.send(topic, value=f"txn-{i}".encode(), partition=0)
        txn.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)},
                                        f"{topic}-txgroup")
        txn.commit_transaction()
    finally:
        txn.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-kp",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=15_000)
    try:
        seen = 0
        for _ in consumer:
            seen += 1
            if seen >= RECORDS:
                break
        consumer.commit()
        consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close()
    assert seen >= RECORDS
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    try:
        admin.describe_groups([f"{topic}-kp"])
        admin.list_group_offsets({f"{topic}-kp": None, f"{topic}-txgroup": None})
        admin.describe_producers([TopicPartition(topic, 0)])
        admin.delete_group_offsets(f"{topic}-kp", [TopicPartition(topic, 2)])
        admin.delete_groups([f"{topic}-kp"])
        admin.delete_records({TopicPartition(topic, 1): 0})
        admin.delete_topics([topic])
    finally:
        admin.close()


def confluent_session(bootstrap: str, topic: str) -> None:
    """librdkafka: admin, idempotent zstd produce, group consume with commit."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=2,
                                                replication_factor=1)]).values():
        future.result(30)
    deadline = time.monotonic() + 30
    while topic not in admin.list_topics(timeout=30).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    for attempt in range(20):
        try:
            for future in admin.describe_configs([ConfigResource("topic", topic)]).values():
                future.result(30)
            break
        except confluent_kafka.KafkaException:
            if attempt == 19:
                raise
            time.sleep(0.3)  # the new topic is not yet known to every broker component
    admin.describe_cluster().result(30)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                         "compression.type": "zstd"})
    for i in range(RECORDS):
        producer.produce(topic, key=str(i).encode(), value=f'{{"n": {i}}}'.encode())
    assert producer.flush(30) == 0
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap,
                                         "group.id": f"{topic}-ck",
                                         "auto.offset.reset": "earliest",
                                         "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + 30
        while seen < RECORDS and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                seen += 1
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert seen >= RECORDS


def kcat_session(bootstrap: str, topic: str) -> None:
    """kcat: list metadata, produce lines, consume them back."""
    subprocess.run(["kcat", "-b", bootstrap, "-L"], check=True, capture_output=True, timeout=60)
    lines = "\n".join(f"kcat-{i}" for i in range(RECORDS)) + "\n"
    subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", topic], input=lines.encode(),
                   check=True, capture_output=True, timeout=60)
    out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
                          "-c", str(RECORDS)], check=True, capture_output=True, timeout=60)
    assert out.stdout.decode().count("kcat-") == RECORDS


def java_console_session(bootstrap: str, topic: str, tools: KafkaTools) -> None:
    """Java console producer and consumer from the broker's own jars."""
    lines = [f"java-{i}" for i in range(RECORDS)]
    tools.console_producer(bootstrap, topic, lines)
    got = tools.console_consumer(bootstrap, topic, RECORDS)
    assert [line for line in got if line.startswith("java-")] == lines
