"""Transcript recording cost: the recorder's own work, and tunnel throughput with it on vs off.

Issue 9, must-show 5. Records are ~300-byte JSON values.

- Recorder step alone (run inline, not on its worker thread): `on_produced` on a
  1000-record batch (decode, a digest per record, one chained spool line) and `on_fetched`
  (batch headers only), on this thread's CPU clock: records per second per core.
- End to end (needs the Kafka jars): a one-node harness broker; confluent-kafka produces N
  records and then consumes them through the tunnel, once without an observer and once
  with a `TranscriptRecorder` spooling to a temp dir (clients in a separate process);
  best of a few wall-clock runs each,
  on and off interleaved so a noisy neighbour hits both. `transcript_on_vs_off_ratio` is
  the throughput of the whole produce + consume with transcripts on over off. With
  transcripts on, the recorder's digest process runs during the timed traffic; it is
  started (and waited for) when the recorder is made, as a session does at its start.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.data import json_records
from bench.framework import BenchOptions, SectionResult, best_of
from streamctl.kafka.fetch_stream import describe_records
from streamctl.kafka.records import Record, RecordBatch, encode_batch
from streamctl.transcript.recorder import TranscriptRecorder

RECORDS = 1000
E2E_RECORDS = 100_000


def _batch(values: list[bytes]) -> bytes:
    records = [Record(0, i, i, b"key-%d" % i, v) for i, v in enumerate(values)]
    batch = RecordBatch(0, 0, 0, len(values) - 1, 1_700_000_000_000,
                        1_700_000_000_000 + len(values), -1, -1, -1, records)
    return bytes(encode_batch(batch))


def _recorder_step(options: BenchOptions, result: SectionResult) -> None:
    data = _batch(json_records(RECORDS))
    with tempfile.TemporaryDirectory() as spool:
        recorder = TranscriptRecorder(Path(spool), subject="bench", grant_id="bench",
                                      background_sync=False, threaded=False)
        produced = best_of(lambda: recorder.on_produced("c1", "t", 0, data, 0, 0),
                           options.repeats)
        fetched = best_of(
            lambda: recorder.on_fetched("c1", "t", describe_records("t", None, 0, 0, data), {}),
            options.repeats)
        recorder.seal("bench")
    for figure, label, seconds in (
        ("transcript_produce_records_per_core_s", "on_produced (digest per record)", produced),
        ("transcript_fetch_records_per_core_s", "on_fetched (batch headers only)", fetched),
    ):
        result.figures[figure] = RECORDS / seconds
        result.rows.append([f"recorder step: {label}", f"{RECORDS / seconds:,.0f}",
                            "records/s/core"])


def _grant(bootstrap: str, topic: str) -> Any:
    from streamctl.kafka.operations import OperationKind
    from streamctl.policy.grant import ClusterSettings, Grant

    now = time.time()
    return Grant(
        grant_id="bench-grant", subject="bench", cluster=ClusterSettings("bench", bootstrap),
        topics=(topic,), operations=frozenset({OperationKind.READ, OperationKind.WRITE,
                                              OperationKind.DESCRIBE}),
        not_before=now - 5, expires_at=now + 3600,
    )


def _produce(bootstrap: str, topic: str, values: list[bytes], count: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "broker.address.family": "v4"})
    start = time.perf_counter()
    for i in range(count):
        producer.produce(topic, values[i % len(values)], partition=0)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("producer could not deliver every record")
    return time.perf_counter() - start


def _consume(bootstrap: str, topic: str, first: int, count: int) -> float:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "broker.address.family": "v4",
                         "fetch.wait.max.ms": 10})
    try:
        consumer.assign([TopicPartition(topic, 0, first)])
        got = 0
        start = time.perf_counter()
        while got < count:
            if time.perf_counter() - start > 120:
                raise TimeoutError(f"consumed {got} of {count} records")
            for message in consumer.consume(10_000, 1.0):
                if message.error():
                    raise KafkaException(message.error())
                got += 1
        return time.perf_counter() - start
    finally:
        consumer.close()


def _end_to_end(options: BenchOptions, result: SectionResult) -> None:
    try:
        from streamctl.tunnel.engine import Tunnel, TunnelThread
        from tests.harness.kafka import KafkaCluster, kafka_home

        kafka_home()
    except Exception as exc:
        result.notes.append(f"end-to-end rows skipped (no Kafka jars; run `make kafka`): {exc}")
        return
    count = 10_000 if options.quick else E2E_RECORDS
    repeats = 2 if options.quick else 5
    values = json_records(RECORDS)
    topic = "bench-transcripts"
    times: dict[str, list[float]] = {"off": [], "on": []}
    # The clients run in another process, so their Python driver loops do not compete with
    # the tunnel thread for this process's GIL (that would measure the bench, not the tunnel).
    spawn = multiprocessing.get_context("spawn")
    with KafkaCluster(1) as cluster, tempfile.TemporaryDirectory() as spool, \
            ProcessPoolExecutor(max_workers=1, mp_context=spawn) as clients:
        cluster.create_topic(topic, partitions=1, replication=1)
        grant = _grant(cluster.bootstrap, topic)
        offset = 0
        for round_ in range(repeats + 1):  # round 0 warms the broker, page cache and imports
            for mode in ("off", "on"):
                recorder = (TranscriptRecorder(Path(spool), subject="bench", grant_id="bench")
                            if mode == "on" else None)
                with TunnelThread(Tunnel(grant, None, observer=recorder)) as tunnel:
                    assert tunnel.bootstrap is not None
                    elapsed = clients.submit(_produce, tunnel.bootstrap, topic, values,
                                             count).result()
                    elapsed += clients.submit(_consume, tunnel.bootstrap, topic, offset,
                                              count).result()
                offset += count
                if recorder is not None:
                    recorder.seal("bench")
                if round_:
                    times[mode].append(elapsed)
    rate = {mode: 2 * count / min(runs) for mode, runs in times.items()}
    result.figures["transcript_off_records_s"] = rate["off"]
    result.figures["transcript_on_records_s"] = rate["on"]
    result.figures["transcript_on_vs_off_ratio"] = rate["on"] / rate["off"]
    result.targets["transcript_on_vs_off_ratio"] = (0.9, "issue 9 must-show 5")
    for mode in ("off", "on"):
        result.rows.append([f"tunnel produce + consume {count:,} records, transcripts {mode}",
                            f"{rate[mode]:,.0f}", "records/s"])


def run(options: BenchOptions) -> SectionResult:
    result = SectionResult(title="Transcripts: recording cost (~300 B JSON records)",
                           columns=["measure", "rate", "unit"])
    _recorder_step(options, result)
    _end_to_end(options, result)
    return result
