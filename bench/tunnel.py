"""Tunnel overhead: confluent-kafka producing and consuming 1 KB records, direct vs tunnel.

Issue 4, must-show 5. On one single-node harness broker, in one run:

- throughput: N records of 1 KB produced (acks=all, librdkafka batching), and 3N consumed
  from offset 0 (the produce runs leave at least that many), directly and through the
  tunnel (no masking rules); MB/s and records/s, best of a few runs each. A consume run of
  N records lasts a quarter of a second, short enough for a busy moment of this shared
  machine to decide it; three times as long measures the steady rate;
- latency: one record at a time at a fixed moderate rate (linger 0), delivery time p50/p99,
  direct and through the tunnel; the added p50 is the difference;
- tunnel peak RSS: the tunnel runs in its own process (so the clients' buffers do not count)
  and its VmHWM (peak resident set) is read from /proc at the end.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.framework import BenchOptions, SectionResult

RECORD = 1024
TOPIC = "bench-tunnel"
LATENCY_RATE = 500  # records per second for the latency run
LATENCY_SECONDS = 4.0

#: Runs a tunnel for a read/write grant on the given bootstrap; prints its own bootstrap.
_TUNNEL_PROCESS = """
import sys, time
from streamctl.kafka.operations import OperationKind
from streamctl.policy.grant import ClusterSettings, Grant
from streamctl.tunnel.engine import run_tunnel_in_thread
now = time.time()
grant = Grant(grant_id="bench", subject="bench", cluster=ClusterSettings("bench", sys.argv[1]),
              topics=("bench-*",), operations=frozenset({OperationKind.READ,
              OperationKind.WRITE, OperationKind.DESCRIBE}), not_before=now - 5,
              expires_at=now + 7200)
with run_tunnel_in_thread(grant) as bootstrap:
    print(bootstrap, flush=True)
    sys.stdin.read()
"""


@contextmanager
def tunnel_process(bootstrap: str) -> Iterator[tuple[str, Callable[[], float]]]:
    """A tunnel in its own process; yields its bootstrap and a reader of its peak RSS (MB)."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", _TUNNEL_PROCESS, bootstrap],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout is not None
        local = proc.stdout.readline().strip()
        if not local:
            raise RuntimeError("the tunnel process did not start")

        def peak_rss_mb() -> float:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
            return float("nan")

        yield local, peak_rss_mb
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _produce(bootstrap: str, count: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap, "broker.address.family": "v4", "linger.ms": 5,
        "acks": "all", "queue.buffering.max.messages": 1_000_000,
    })
    value = os.urandom(RECORD // 2).hex().encode()
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(TOPIC, value, partition=0)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 5000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("producer could not deliver every record")
    return time.perf_counter() - start


def _consume(bootstrap: str, count: int) -> float:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "broker.address.family": "v4",
    })
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        got = 0
        start = time.perf_counter()
        deadline = start + 180
        while got < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"consumed {got} of {count} records")
            for message in consumer.consume(10_000, 1.0):
                if message.error():
                    raise KafkaException(message.error())
                got += 1
        return time.perf_counter() - start
    finally:
        consumer.close()


def _latencies(bootstrap: str) -> list[float]:
    """Delivery latency (ms) of single records sent at a fixed rate with no batching delay."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap, "broker.address.family": "v4", "linger.ms": 0,
        "acks": "all",
    })
    value = b"x" * RECORD
    sent_at: dict[int, float] = {}
    done: list[float] = []

    def delivered(err: object, msg: object, i: int) -> None:
        if err is None:
            done.append((time.perf_counter() - sent_at[i]) * 1000)

    producer.produce(TOPIC, value, partition=0)  # warm the connection and metadata
    producer.flush(30)
    interval = 1.0 / LATENCY_RATE
    total = int(LATENCY_RATE * LATENCY_SECONDS)
    start = time.perf_counter()
    for i in range(total):
        target = start + i * interval
        while (now := time.perf_counter()) < target:
            producer.poll(min(target - now, 0.001))
        sent_at[i] = time.perf_counter()
        producer.produce(TOPIC, value, partition=0,
                         on_delivery=lambda err, msg, i=i: delivered(err, msg, i))
        producer.poll(0)
    producer.flush(30)
    return done


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(options: BenchOptions) -> SectionResult:
    from tests.harness.kafka import KafkaCluster

    result = SectionResult(
        title="Tunnel: confluent-kafka, 1 KB records, direct vs through the tunnel",
        columns=["measure", "direct", "tunnel", "tunnel / direct"],
    )
    count = 30_000 if options.quick else 100_000
    repeats = 2 if options.quick else 5
    consumed = 3 * count  # the 2 x repeats produce runs leave at least this many
    mb = {"produce": count * RECORD / 1e6, "consume": consumed * RECORD / 1e6}
    records = {"produce": count, "consume": consumed}
    with KafkaCluster(1) as cluster:
        cluster.create_topic(TOPIC, partitions=1, replication=1)
        with tunnel_process(cluster.bootstrap) as (tunnel, peak_rss_mb):
            # direct and tunnel runs alternate, so a busy moment hurts both alike
            runs: dict[str, dict[str, list[float]]] = {
                "produce": {"direct": [], "tunnel": []},
                "consume": {"direct": [], "tunnel": []},
            }
            for _ in range(repeats):
                runs["produce"]["direct"].append(_produce(cluster.bootstrap, count))
                runs["produce"]["tunnel"].append(_produce(tunnel, count))
            for _ in range(repeats):
                runs["consume"]["direct"].append(_consume(cluster.bootstrap, consumed))
                runs["consume"]["tunnel"].append(_consume(tunnel, consumed))
            produce = {k: min(v) for k, v in runs["produce"].items()}
            consume = {k: min(v) for k, v in runs["consume"].items()}
            direct_lat = _latencies(cluster.bootstrap)
            tunnel_lat = _latencies(tunnel)
            rss = peak_rss_mb()
    for label, seconds in (("produce", produce), ("consume", consume)):
        d, t = mb[label] / seconds["direct"], mb[label] / seconds["tunnel"]
        n = records[label]
        result.rows.append([f"{label} MB/s", f"{d:,.1f}", f"{t:,.1f}", f"{t / d:.2f}"])
        result.rows.append([f"{label} records/s", f"{n / seconds['direct']:,.0f}",
                            f"{n / seconds['tunnel']:,.0f}", ""])
        result.figures[f"tunnel_{label}_ratio"] = t / d
        result.figures[f"tunnel_{label}_direct_mb_s"] = d
        result.figures[f"tunnel_{label}_tunnel_mb_s"] = t
    p50 = (statistics.median(direct_lat), statistics.median(tunnel_lat))
    p99 = (_pct(direct_lat, 0.99), _pct(tunnel_lat, 0.99))
    result.rows.append([f"produce latency p50 ms ({LATENCY_RATE}/s)", f"{p50[0]:.2f}",
                        f"{p50[1]:.2f}", f"+{p50[1] - p50[0]:.2f} ms"])
    result.rows.append(["produce latency p99 ms", f"{p99[0]:.2f}", f"{p99[1]:.2f}",
                        f"+{p99[1] - p99[0]:.2f} ms"])
    result.rows.append(["tunnel peak RSS MB", "", f"{rss:.0f}", ""])
    result.figures["tunnel_added_p50_ms"] = p50[1] - p50[0]
    result.figures["tunnel_added_p99_ms"] = p99[1] - p99[0]
    result.figures["tunnel_peak_rss_mb"] = rss
    result.targets["tunnel_produce_ratio"] = (0.8, "issue 4 must-show 5")
    result.targets["tunnel_consume_ratio"] = (0.8, "issue 4 must-show 5")
    result.notes.append(
        "targets: throughput ratios >= 0.8, added p50 < 1 ms, tunnel peak RSS < 150 MB; "
        f"{count:,} records x {RECORD} B produced, {consumed:,} consumed, best of {repeats}"
    )
    return result
