"""Issue 4, must-show 2: each enforcement is seen by a real client as the right Kafka error."""

from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import KafkaError, Producer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as Errors
from kafka.admin import NewTopic

from tests.tunnel.helpers import split_address, tunnel_for

QUIET = {"request_timeout_ms": 15000}


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, **QUIET)


def test_read_only_grant_refuses_produce(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    with tunnel_for(kafka, topics=(unique_topic,), ops=("read",)) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            with pytest.raises(Errors.TopicAuthorizationFailedError):
                producer.send(unique_topic, b"nope").get(timeout=30)
        finally:
            producer.close(timeout=5)

        errors: list[KafkaError] = []
        p = Producer({"bootstrap.servers": t.bootstrap, "message.timeout.ms": 15000})
        p.produce(unique_topic, b"nope", on_delivery=lambda err, msg: errors.append(err))
        assert p.flush(30) == 0
        assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert t.tunnel.stats.refused_by_code.get(29, 0) >= 2


def test_topic_outside_grant_is_invisible_and_refused_by_name(kafka, unique_topic) -> None:
    secret = unique_topic + "-secret"
    kafka.create_topic(unique_topic)
    kafka.create_topic(secret)
    with tunnel_for(kafka, topics=(unique_topic,), ops=("read", "write")) as t:
        consumer = KafkaConsumer(bootstrap_servers=t.bootstrap, **QUIET)
        try:
            visible = consumer.topics()
        finally:
            consumer.close()
        assert unique_topic in visible
        assert secret not in visible

        a = admin(t.bootstrap)
        try:
            described = a.describe_topics([secret])
        finally:
            a.close()
        assert [d["error_code"] for d in described] == [29]
        assert not described[0]["partitions"]

        producer = KafkaProducer(bootstrap_servers=t.bootstrap, max_block_ms=5000)
        try:
            with pytest.raises(Errors.TopicAuthorizationFailedError):
                producer.send(secret, b"x").get(timeout=10)
        finally:
            producer.close(timeout=5)


def test_immutable_topic_is_not_deleted_even_with_a_delete_grant(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    with tunnel_for(
        kafka,
        topics=(unique_topic,),
        ops=("read", "write", "delete", "alter"),
        classes={unique_topic: ("immutable",)},
    ) as t:
        a = admin(t.bootstrap)
        try:
            with pytest.raises(Errors.PolicyViolationError):
                a.delete_topics([unique_topic])
            with pytest.raises(Errors.PolicyViolationError):
                a.delete_records({TopicPartition(unique_topic, 0): 0})
        finally:
            a.close()
    probe = admin(kafka.bootstrap)
    try:
        assert unique_topic in probe.list_topics()
    finally:
        probe.close()


def test_high_value_write_needs_an_approval(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    classes = {unique_topic: ("high-value",)}
    notes: list[str] = []
    with tunnel_for(kafka, topics=(unique_topic,), ops=("write",), classes=classes) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            with pytest.raises(Errors.TopicAuthorizationFailedError):
                producer.send(unique_topic, b"pay me").get(timeout=30)
        finally:
            producer.close(timeout=5)
        notes.extend(str(k) for k in t.tunnel.stats.refused_by_code)
    assert "29" in notes
    with tunnel_for(
        kafka, topics=(unique_topic,), ops=("write",), classes=classes, approval_id="apr-1"
    ) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            meta = producer.send(unique_topic, b"approved").get(timeout=30)
        finally:
            producer.close(timeout=5)
        assert meta.offset >= 0


def test_create_topics_needs_create(kafka, unique_topic) -> None:
    with tunnel_for(kafka, topics=(unique_topic,), ops=("read", "write")) as t:
        a = admin(t.bootstrap)
        try:
            with pytest.raises(Errors.TopicAuthorizationFailedError):
                a.create_topics([NewTopic(unique_topic, 1, 1)])
        finally:
            a.close()
    with tunnel_for(kafka, topics=(unique_topic,), ops=("create",)) as t:
        a = admin(t.bootstrap)
        try:
            a.create_topics([NewTopic(unique_topic, 1, 1)])
        finally:
            a.close()
    probe = admin(kafka.bootstrap)
    try:
        assert unique_topic in probe.list_topics()
    finally:
        probe.close()


def test_group_outside_grant_is_refused(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    with tunnel_for(kafka, topics=(unique_topic,), ops=("read",), groups=("team-*",)) as t:
        consumer = KafkaConsumer(
            unique_topic, bootstrap_servers=t.bootstrap, group_id="other-group", **QUIET
        )
        try:
            with pytest.raises(Errors.GroupAuthorizationFailedError):
                for _ in range(20):
                    consumer.poll(timeout_ms=500)
        finally:
            consumer.close(autocommit=False)


def test_expired_grant_stops_the_tunnel(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    notices: list[tuple[str, str]] = []
    options = {
        "expiry_warning": 3.0,
        "expiry_grace": 0.5,
        "on_notice": lambda level, text: notices.append((level, text)),
    }
    with tunnel_for(kafka, options, topics=(unique_topic,), ops=("write",), ttl=6) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            assert producer.send(unique_topic, b"in time").get(timeout=30).offset >= 0
        finally:
            producer.close(timeout=5)
        assert t.wait(timeout=30), "the tunnel kept running after the grant expired"
        assert t.tunnel.stop_reason is not None and "expired" in t.tunnel.stop_reason
        with pytest.raises(OSError):
            socket.create_connection(split_address(t.bootstrap), timeout=2).close()
    levels = [level for level, _ in notices]
    assert levels[0] == "warning" and "expires in" in notices[0][1]
    assert ("error" in levels) and any("streamctl connect" in text for _, text in notices)


def test_requests_after_expiry_are_refused_with_a_clear_error(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    options = {"expiry_warning": 0.0, "expiry_grace": 5.0}
    with tunnel_for(kafka, options, topics=(unique_topic,), ops=("write",), ttl=4) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            producer.send(unique_topic, b"before").get(timeout=30)
            while time.time() < t.tunnel.grant.expires_at + 0.3:
                time.sleep(0.1)
            with pytest.raises(Errors.TopicAuthorizationFailedError):
                producer.send(unique_topic, b"after").get(timeout=10)
        finally:
            producer.close(timeout=2)


def test_metadata_cannot_auto_create_topics_without_create(kafka, unique_topic) -> None:
    with tunnel_for(kafka, topics=(unique_topic,), ops=("write",)) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=3000)
        try:
            with pytest.raises(Errors.KafkaTimeoutError):
                producer.send(unique_topic, b"x").get(timeout=10)
        finally:
            producer.close(timeout=2)
    probe = admin(kafka.bootstrap)
    try:
        assert unique_topic not in probe.list_topics()  # the broker would have auto-created it
    finally:
        probe.close()
