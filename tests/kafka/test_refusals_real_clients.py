"""Refusals as real clients see them (issue 3, must-show 4).

`RecordingProxy` with a `refuse` callback answers chosen requests with `refusal_response`
(in request order) and forwards the rest to the real broker; the clients, which nobody here
wrote, must report the intended Kafka error instead of hanging or retrying.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import confluent_kafka
import kafka.errors as kerr
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import ConfigResource as ConfluentConfigResource
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from streamctl.kafka import error_codes
from streamctl.kafka.apis import ApiKey
from streamctl.kafka.summary import RequestSummary
from tests.harness.kafka import KafkaCluster, java_command
from tests.kafka.recording_proxy import RecordingProxy

K = ApiKey
Rule = Callable[[RequestSummary], "tuple[int, str | None] | None"]


@pytest.fixture
def proxy(kafka: KafkaCluster) -> Iterator[RecordingProxy]:
    with RecordingProxy(kafka.bootstrap) as p:
        yield p
        assert p.recording.errors == []


def refuse_api(api_key: int, code: int, topic: str | None = None) -> Rule:
    def rule(s: RequestSummary) -> tuple[int, str | None] | None:
        if s.api_key == api_key and (topic is None or topic in s.topics):
            return code, "refused by streamctl test policy"
        return None

    return rule


def test_kafka_python_producer_sees_topic_authorization_failed(
    kafka: KafkaCluster, proxy: RecordingProxy, unique_topic: str
) -> None:
    kafka.create_topic(unique_topic)
    proxy.refuse = refuse_api(K.PRODUCE, error_codes.TOPIC_AUTHORIZATION_FAILED, unique_topic)
    producer = KafkaProducer(bootstrap_servers=proxy.bootstrap, retries=0, max_block_ms=20_000)
    try:
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            producer.send(unique_topic, b"denied").get(timeout=30)
    finally:
        producer.close(timeout=5)


def test_kafka_python_consumer_fetch_sees_topic_authorization_failed(
    kafka: KafkaCluster, proxy: RecordingProxy, unique_topic: str
) -> None:
    kafka.create_topic(unique_topic)
    rules = [refuse_api(K.FETCH, error_codes.TOPIC_AUTHORIZATION_FAILED, unique_topic),
             refuse_api(K.LIST_OFFSETS, error_codes.TOPIC_AUTHORIZATION_FAILED, unique_topic)]
    proxy.refuse = lambda s: next((r for rule in rules if (r := rule(s))), None)
    consumer = KafkaConsumer(bootstrap_servers=proxy.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(unique_topic, 0)])
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def test_kafka_python_group_sees_group_authorization_failed(
    kafka: KafkaCluster, proxy: RecordingProxy, unique_topic: str
) -> None:
    kafka.create_topic(unique_topic)
    proxy.refuse = refuse_api(K.FIND_COORDINATOR, error_codes.GROUP_AUTHORIZATION_FAILED)
    consumer = KafkaConsumer(unique_topic, bootstrap_servers=proxy.bootstrap,
                             group_id=f"{unique_topic}-g", enable_auto_commit=False)
    try:
        with pytest.raises(kerr.GroupAuthorizationFailedError):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def test_kafka_python_admin_sees_policy_violation_and_cluster_authorization(
    proxy: RecordingProxy, unique_topic: str
) -> None:
    proxy.refuse = lambda s: (
        (error_codes.POLICY_VIOLATION, "immutable topics cannot be created here")
        if s.api_key == K.CREATE_TOPICS else
        (error_codes.TOPIC_AUTHORIZATION_FAILED, None) if s.api_key == K.DELETE_TOPICS else
        (error_codes.CLUSTER_AUTHORIZATION_FAILED, None) if s.api_key == K.LIST_GROUPS
        else None
    )
    admin = KafkaAdminClient(bootstrap_servers=proxy.bootstrap, request_timeout_ms=20_000)
    try:
        with pytest.raises(kerr.PolicyViolationError):
            admin.create_topics([NewTopic(unique_topic, 1, 1)])
        with pytest.raises(kerr.TopicAuthorizationFailedError):
            admin.delete_topics([unique_topic])
        with pytest.raises(kerr.ClusterAuthorizationFailedError):
            admin.list_groups()
    finally:
        admin.close()


def test_kafka_python_transactions_see_transactional_id_authorization_failed(
    proxy: RecordingProxy, unique_topic: str
) -> None:
    proxy.refuse = refuse_api(K.INIT_PRODUCER_ID,
                              error_codes.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    producer = KafkaProducer(bootstrap_servers=proxy.bootstrap,
                             transactional_id=f"{unique_topic}-tx")
    try:
        with pytest.raises(kerr.TransactionalIdAuthorizationFailedError):
            producer.init_transactions()
    finally:
        producer.close(timeout=5)


def test_confluent_producer_reports_topic_authorization_failed(
    kafka: KafkaCluster, proxy: RecordingProxy, unique_topic: str
) -> None:
    kafka.create_topic(unique_topic)
    proxy.refuse = refuse_api(K.PRODUCE, error_codes.TOPIC_AUTHORIZATION_FAILED, unique_topic)
    producer = confluent_kafka.Producer({"bootstrap.servers": proxy.bootstrap,
                                         "message.timeout.ms": 20_000})
    errors: list[confluent_kafka.KafkaError] = []
    producer.produce(unique_topic, b"denied",
                     on_delivery=lambda err, msg: errors.append(err) if err else None)
    producer.flush(30)
    assert [e.code() for e in errors] == [confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_confluent_admin_reports_cluster_authorization_failed(proxy: RecordingProxy) -> None:
    proxy.refuse = refuse_api(K.DESCRIBE_CONFIGS, error_codes.CLUSTER_AUTHORIZATION_FAILED)
    admin = AdminClient({"bootstrap.servers": proxy.bootstrap})
    futures = admin.describe_configs([ConfluentConfigResource("broker", "1")])
    for future in futures.values():
        with pytest.raises(confluent_kafka.KafkaException) as info:
            future.result(30)
        assert info.value.args[0].code() == confluent_kafka.KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_kcat_reports_topic_authorization_failed(
    kafka: KafkaCluster, proxy: RecordingProxy, unique_topic: str
) -> None:
    kafka.create_topic(unique_topic)
    proxy.refuse = refuse_api(K.PRODUCE, error_codes.TOPIC_AUTHORIZATION_FAILED, unique_topic)
    out = subprocess.run(["kcat", "-b", proxy.bootstrap, "-P", "-t", unique_topic],
                         input=b"denied\n", capture_output=True, timeout=60)
    assert b"Topic authorization failed" in out.stderr + out.stdout


def test_java_console_producer_reports_topic_authorization_exception(
    kafka: KafkaCluster, proxy: RecordingProxy, unique_topic: str, tmp_path: Path
) -> None:
    kafka.create_topic(unique_topic)
    # The Java producer 4.x writes Produce v13, which names topics by id: refuse every Produce.
    proxy.refuse = refuse_api(K.PRODUCE, error_codes.TOPIC_AUTHORIZATION_FAILED)
    log_config = tmp_path / "log4j2.properties"
    log_config.write_text("\n".join([
        "appender.err.type = Console", "appender.err.name = ERR",
        "appender.err.target = SYSTEM_ERR", "appender.err.layout.type = PatternLayout",
        "appender.err.layout.pattern = %p %c: %m%n", "rootLogger.level = warn",
        "rootLogger.appenderRef.err.ref = ERR", ""]))
    out = subprocess.run(
        java_command("org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server",
                     proxy.bootstrap, "--topic", unique_topic,
                     jvm_options=[f"-Dlog4j2.configurationFile={log_config}"]),
        input=b"denied\n", capture_output=True, timeout=120)
    produce = [e for e in proxy.recording.exchanges if e.api_key == K.PRODUCE]
    assert produce and all(e.direction == "request" for e in produce)  # none reached the broker
    assert b"TopicAuthorizationException" in out.stderr + out.stdout
