"""Masking throughput: the masking step alone, and masked consume through the tunnel.

Issue 8, must-show 4. Records are ~300-byte JSON orders with three masked fields
(customer.email hashed, customer.ssn redacted, items[*].card keeping its last 4 digits).

- Masking step alone: `GrantMasker.mask` over a 1000-record batch (decode, mask, re-encode),
  timed on this thread's CPU clock: records per second per core.
- End to end (needs the Kafka jars, as `make bench` fetches them): a one-node broker from the
  test harness, N records, consumed with confluent-kafka (librdkafka, so the client is not
  the bottleneck; in a child process, so it does not share the GIL with the tunnel thread)
  directly, through the tunnel, and through the tunnel with masking; best of a few
  interleaved wall-clock runs each. The tunnel thread's CPU time during the masked run (plus
  its masking worker process's, which takes part of large batches) gives records masked per
  second of tunnel CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.data import json_records
from bench.framework import BenchOptions, SectionResult, best_of
from streamctl.kafka.compression import Compression
from streamctl.kafka.records import Record, RecordBatch, encode_batch
from streamctl.masking import GrantMasker
from streamctl.policy.grant import MaskingRule

RECORDS = 1000
TOPIC = "bench-orders"
SECRET = b"bench-masking-secret"
RULES = (
    MaskingRule(topics=("bench-*",), fields=("customer.email",), strategy="hash", name="email"),
    MaskingRule(topics=("bench-*",), fields=("customer.ssn",), strategy="redact", name="ssn"),
    MaskingRule(topics=("bench-*",), fields=("items[*].card",), strategy="keep_last",
                keep_last=4, name="card"),
)
E2E_RECORDS = 100_000


def _grant(bootstrap: str = "127.0.0.1:9092") -> Any:
    from streamctl.kafka.operations import OperationKind
    from streamctl.policy.grant import ClusterSettings, Grant

    now = time.time()
    return Grant(
        grant_id="bench-grant", subject="bench", cluster=ClusterSettings("bench", bootstrap),
        topics=("bench-*",), operations=frozenset({OperationKind.READ, OperationKind.DESCRIBE}),
        not_before=now - 5, expires_at=now + 3600, masking=RULES,
    )


def _batch(values: list[bytes], codec: int) -> bytes:
    records = [Record(0, i, i, None, v) for i, v in enumerate(values)]
    batch = RecordBatch(0, 0, codec, len(values) - 1, 1_700_000_000_000,
                        1_700_000_000_000 + len(values), -1, -1, -1, records)
    return bytes(encode_batch(batch))


def _masking_step(options: BenchOptions, result: SectionResult) -> None:
    # One core: the worker process that splits large batches in the tunnel stays off here,
    # so the figures are records per second of one thread's CPU, all work included.
    masker = GrantMasker(_grant(), SECRET, parallel=False)
    values = json_records(RECORDS)
    clean = [json.dumps({"order": i, "sku": f"SKU-{i}", "pad": "y" * 260}).encode()
             for i in range(RECORDS)]
    cases: list[tuple[str, str, bytes]] = [
        ("masking_records_per_core_s", "3 fields masked, uncompressed", _batch(values, 0)),
        ("masking_zstd_records_per_core_s", "3 fields masked, zstd",
         _batch(values, Compression.ZSTD)),
        ("masking_clean_records_per_core_s", "rules on topic, nothing to mask",
         _batch(clean, 0)),
    ]
    for figure, label, data in cases:
        outcome = masker.mask(TOPIC, 0, data)
        assert outcome.counts["records_seen"] == RECORDS
        seconds = best_of(lambda d=data: masker.mask(TOPIC, 0, d), options.repeats)
        rate = RECORDS / seconds
        result.figures[figure] = rate
        result.rows.append([f"masking step: {label}", f"{rate:,.0f}", "records/s/core"])
    result.targets["masking_records_per_core_s"] = (100_000, "issue 8 must-show 4")
    # The floor of any masker that parses JSON: orjson parse + serialise of the same values,
    # plus the keyed hash the email rule needs. Shown so the masking step can be read
    # against what no Python-level change can go below.
    loads, dumps = orjson.loads, orjson.dumps
    seconds = best_of(lambda: [dumps(loads(v)) for v in values], options.repeats)
    result.figures["masking_json_floor_records_per_core_s"] = RECORDS / seconds
    result.rows.append(["floor: orjson parse + serialise only", f"{RECORDS / seconds:,.0f}",
                        "records/s/core"])


def _consume(bootstrap: str, count: int, check: Callable[[bytes], None] | None = None) -> float:
    """Seconds for confluent-kafka, in a child process, to read `count` records from offset 0."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.consume_child", bootstrap, TOPIC, str(count)],
        capture_output=True, text=True, timeout=180, check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"consumer failed: {done.stderr.strip()[-500:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if check is not None:
        check(bytes.fromhex(answer["first"]))
    return float(answer["seconds"])


def _thread_clock(handle: Any) -> int | None:
    """The CPU-time clock of a tunnel's thread, to measure what the tunnel itself spends."""
    ident = handle._thread.ident
    return time.pthread_getcpuclockid(ident) if ident else None


def _worker_cpu(masker: GrantMasker) -> float:
    """CPU seconds used so far by the masker's worker process (0 when none runs)."""
    pid = masker.worker_pid
    if pid is None:
        return 0.0
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
    except Exception:
        return 0.0
    return float(times.user + times.system)


def _produce(bootstrap: str, values: list[bytes], count: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "broker.address.family": "v4"})
    for i in range(count):
        producer.produce(TOPIC, values[i % len(values)], partition=0)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("producer could not deliver every record")


def _end_to_end(options: BenchOptions, result: SectionResult) -> None:
    try:
        from streamctl.tunnel.engine import Tunnel, TunnelThread
        from tests.harness.kafka import KafkaCluster, kafka_home
    except ImportError as exc:
        result.notes.append(f"end-to-end rows skipped: {exc}")
        return
    try:
        kafka_home()
    except Exception as exc:
        result.notes.append(f"end-to-end rows skipped (no Kafka jars; run `make kafka`): {exc}")
        return
    count = 10_000 if options.quick else E2E_RECORDS
    repeats = 2 if options.quick else 3
    original = json.loads(json_records(RECORDS)[0])

    def masked_check(value: bytes) -> None:
        # the consumer must see masked data: no e-mail, no SSN
        if original["customer"]["email"].encode() in value or (
                original["customer"]["ssn"].encode() in value):
            raise AssertionError("the masked tunnel delivered an unmasked value")

    with KafkaCluster(1) as cluster:
        cluster.create_topic(TOPIC, partitions=1, replication=1)
        _produce(cluster.bootstrap, json_records(RECORDS), count)
        grant = _grant(cluster.bootstrap)
        masker = GrantMasker(grant, SECRET)
        with TunnelThread(Tunnel(grant, None)) as plain, \
                TunnelThread(Tunnel(grant, None, masker=masker)) as masked:
            assert plain.bootstrap is not None and masked.bootstrap is not None
            clock_id = _thread_clock(masked)
            plain_clock = _thread_clock(plain)
            _consume(cluster.bootstrap, count)  # warm the broker's page cache
            best = {"direct": float("inf"), "tunnel": float("inf"), "masked": float("inf")}
            masked_cpu = plain_cpu = float("inf")
            # Rounds interleave the three paths so a busy moment on a shared machine
            # does not land on one path only; each path keeps its best round.
            for _ in range(repeats):
                best["direct"] = min(best["direct"], _consume(cluster.bootstrap, count))
                cpu_before = time.clock_gettime(plain_clock) if plain_clock is not None else 0.0
                best["tunnel"] = min(best["tunnel"], _consume(plain.bootstrap, count))
                if plain_clock is not None:
                    plain_cpu = min(plain_cpu, time.clock_gettime(plain_clock) - cpu_before)
                cpu_before = time.clock_gettime(clock_id) if clock_id is not None else 0.0
                worker_before = _worker_cpu(masker)
                wall = _consume(masked.bootstrap, count, masked_check)
                if clock_id is not None:
                    # the tunnel's CPU includes its masking worker process, if one ran
                    used = time.clock_gettime(clock_id) - cpu_before
                    masked_cpu = min(masked_cpu, used + _worker_cpu(masker) - worker_before)
                best["masked"] = min(best["masked"], wall)
    direct, tunnel, masked_wall = best["direct"], best["tunnel"], best["masked"]
    if masked_cpu == float("inf") or plain_cpu == float("inf"):
        masked_cpu = plain_cpu = 0.0
    rates = {"direct": count / direct, "tunnel": count / tunnel, "masked": count / masked_wall}
    result.figures["consume_direct_records_s"] = rates["direct"]
    result.figures["consume_tunnel_records_s"] = rates["tunnel"]
    result.figures["masked_consume_records_s"] = rates["masked"]
    result.figures["masked_consume_vs_tunnel_ratio"] = rates["masked"] / rates["tunnel"]
    result.figures["masked_consume_vs_direct_ratio"] = rates["masked"] / rates["direct"]
    if masked_cpu > 0 and plain_cpu > 0:
        result.figures["masked_consume_records_per_tunnel_cpu_s"] = count / masked_cpu
        result.figures["consume_tunnel_records_per_tunnel_cpu_s"] = count / plain_cpu
        result.figures["masked_vs_tunnel_cpu_efficiency_ratio"] = plain_cpu / masked_cpu
    result.targets["masked_consume_vs_tunnel_ratio"] = (0.5, "issue 8 must-show 4")
    for label, key in (("consume direct (confluent-kafka)", "direct"),
                       ("consume through the tunnel", "tunnel"),
                       ("consume through the tunnel, masked", "masked")):
        result.rows.append([f"{label}, {count:,} records", f"{rates[key]:,.0f}", "records/s"])
    if masked_cpu > 0 and plain_cpu > 0:
        result.rows.append(["tunnel consume per second of tunnel-thread CPU",
                            f"{count / plain_cpu:,.0f}", "records/s"])
        result.rows.append(["masked consume per second of tunnel CPU (thread + worker)",
                            f"{count / masked_cpu:,.0f}", "records/s"])
        result.notes.append(
            "Wall-clock consume ratios depend on how much CPU the tunnel thread gets: on a busy "
            "shared machine the CPU-bound masked path is starved first. The tunnel-CPU rows "
            "show the cost per record independent of that."
        )


def run(options: BenchOptions) -> SectionResult:
    result = SectionResult(
        title="Masking: ~300 B JSON records, 3 masked fields (email hash, ssn redact, card "
        "keep_last 4)",
        columns=["measure", "rate", "unit"],
    )
    _masking_step(options, result)
    _end_to_end(options, result)
    return result
