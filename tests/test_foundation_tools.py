"""kcat and the Java console tools talk to the harness brokers; the console script runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer

import streamctl
from tests.harness.kafka import KafkaCluster
from tests.harness.tools import KafkaTools


def _kcat_metadata(bootstrap: str) -> dict[str, object]:
    result = subprocess.run(
        ["kcat", "-L", "-J", "-b", bootstrap], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    metadata: dict[str, object] = json.loads(result.stdout)
    return metadata


def test_kcat_lists_the_single_node(kafka: KafkaCluster, unique_topic: str) -> None:
    kafka.create_topic(unique_topic, partitions=2)
    metadata = _kcat_metadata(kafka.bootstrap)
    assert [b["id"] for b in metadata["brokers"]] == kafka.nodes  # type: ignore[index]
    topics = {t["topic"]: t for t in metadata["topics"]}  # type: ignore[index]
    assert len(topics[unique_topic]["partitions"]) == 2


@pytest.mark.cluster
def test_kcat_lists_the_three_node_cluster(kafka_cluster: KafkaCluster) -> None:
    metadata = _kcat_metadata(kafka_cluster.bootstrap)
    brokers = metadata["brokers"]
    assert sorted(b["id"] for b in brokers) == [1, 2, 3]  # type: ignore[union-attr]
    ports = {int(b["name"].rsplit(":", 1)[1]) for b in brokers}  # type: ignore[union-attr]
    assert ports == {kafka_cluster.address_of(n)[1] for n in kafka_cluster.nodes}


def test_java_console_producer_writes_what_kafka_python_reads(
    kafka: KafkaCluster, kafka_tools: KafkaTools, unique_topic: str
) -> None:
    kafka.create_topic(unique_topic)
    lines = [f"k{i}:value {i} from the console producer" for i in range(50)]
    kafka_tools.console_producer(
        kafka.bootstrap,
        unique_topic,
        lines,
        reader_props={"parse.key": "true", "key.separator": ":"},
    )
    consumer = KafkaConsumer(
        unique_topic,
        bootstrap_servers=kafka.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
    )
    try:
        records = [(m.key, m.value) for _, m in zip(range(50), consumer, strict=False)]
    finally:
        consumer.close()
    assert records == [
        (f"k{i}".encode(), f"value {i} from the console producer".encode()) for i in range(50)
    ]


def test_java_console_consumer_reads_back(
    kafka: KafkaCluster, kafka_tools: KafkaTools, unique_topic: str
) -> None:
    kafka.create_topic(unique_topic)
    kafka_tools.console_producer(kafka.bootstrap, unique_topic, ["one", "two", "three"])
    lines = kafka_tools.console_consumer(
        kafka.bootstrap, unique_topic, max_messages=3, extra_props={"group.id": unique_topic}
    )
    assert lines == ["one", "two", "three"]


def _console_script() -> str:
    """The installed `streamctl` entry point (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).parent / "streamctl"
    found = str(beside) if beside.exists() else shutil.which("streamctl")
    assert found, "the streamctl console script is not installed (pip install -e .)"
    return found


def test_console_script_help_and_version() -> None:
    script = _console_script()
    helped = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "Usage" in helped.stdout and "streamctl" in helped.stdout
    versioned = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert versioned.returncode == 0, versioned.stderr
    assert streamctl.__version__ in versioned.stdout
