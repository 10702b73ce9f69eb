"""Large partitions masked together with the worker process: same bytes, and safe failures.

GrantMasker shares a partition of SPLIT_MIN_RECORDS or more records with a worker process:
it masks from the last batch (or value, inside one big batch) back while the calling thread
masks from the first, until they meet. These tests check that this gives byte for byte what
masking in one thread gives (every codec, keys-only and detector rules, null, empty, text and
binary values, transaction markers), that the worker starts only when needed and stops with
`close` and with the tunnel, that the key never shows in its command line or environment,
that a dead or stuck worker is never waited for and leaves the work to the calling thread,
and that an answer out of shape fails the partition closed.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from streamctl.kafka.compression import Compression
from streamctl.kafka.records import (
    Record,
    RecordBatch,
    decode_batches,
    decode_sections,
    encode_batch,
)
from streamctl.masking import GrantMasker, MaskingError
from streamctl.masking.masker import SPLIT_MIN_RECORDS
from streamctl.masking.pool import MaskingWorker
from streamctl.policy.grant import MaskingRule
from streamctl.tunnel.engine import Tunnel, TunnelThread
from tests.harness.kafka import KafkaCluster
from tests.masking.grants import SECRET, grant_with, rule
from tests.masking.test_through_tunnel import CapturingObserver
from tests.policy.grants import make_grant

COUNT = SPLIT_MIN_RECORDS * 2 + 7
KEY_RULES = (
    rule(name="email", fields=("customer.email",), strategy="hash"),
    rule(name="ssn", fields=("customer.ssn",)),
    rule(name="card", fields=("items[*].card",), strategy="keep_last", keep_last=4),
)
DETECTOR_RULE = rule(name="pii", detectors=("email", "card", "us_ssn"))


def _value(i: int) -> bytes | None:
    email, ssn = f"person{i}@corp.example.com", f"{100 + i % 800:03d}-45-{1000 + i:04d}"
    kind = i % 7
    if kind == 5:
        return None if i % 2 else b""
    if kind == 6:
        return b"\xff\xfe binary " + email.encode() if i % 2 else f"mail {email}".encode()
    return json.dumps({"customer": {"email": email, "ssn": ssn},
                       "items": [{"card": "4111111111111111"}], "i": i}).encode()


def _records(codec: int, count: int = COUNT, base: int = 100) -> bytes:
    records = [Record(0, i, i, None, _value(base + i)) for i in range(count)]
    batch = RecordBatch(base, 0, codec, count - 1, 1_700_000_000_000, 1_700_000_000_000 + count,
                        -1, -1, -1, records)
    return bytes(encode_batch(batch))


def _small_batches(codec: int, batches: int = 24, each: int = 40) -> bytes:
    """What Java producers send: many small batches in one fetched partition."""
    return b"".join(_records(codec, each, base=i * each) for i in range(batches))


def _started(masker: GrantMasker) -> GrantMasker:
    """The masker, with its worker started and ready (the tunnel never waits for this)."""
    worker = masker._worker
    assert worker is not None
    assert worker.available(wait=30.0)
    return masker


def _slow_thread(masker: GrantMasker, delay: float = 0.0005, topic: str = "orders"
                 ) -> GrantMasker:
    """Slow the calling thread's value mask, so the worker surely meets it early."""
    plan = masker._plan(topic)
    assert plan is not None
    fast = masker._value_masks[id(plan)]

    def slow(raw: bytes, counts: dict[str, int]) -> bytes:
        time.sleep(delay)
        return fast(raw, counts)

    masker._value_masks[id(plan)] = slow
    return masker


def _share(values: list[bytes | None]) -> tuple[tuple[int, ...], bytes]:
    """A batch's header and uncompressed records, as the worker is given them."""
    records = [Record(0, i, i, None, v) for i, v in enumerate(values)]
    batch = RecordBatch(0, 0, 0, len(values) - 1, 0, 0, -1, -1, -1, records)
    section = decode_sections(bytes(encode_batch(batch)))[0][0]
    return section.header, bytes(section.data[section.start : section.end])


def _until_done(worker: MaskingWorker) -> dict[int, tuple[list[bytes | None], dict[str, int]]]:
    """Every chunk of the current values share, once the worker says it is done."""
    deadline = time.monotonic() + 30
    while not worker._worker_done:
        assert time.monotonic() < deadline
        chunks = worker.poll_chunks()
        time.sleep(0.01)
    return chunks


@pytest.fixture
def parallel() -> Iterator[GrantMasker]:
    masker = _started(GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=True))
    yield masker
    masker.close()


@pytest.mark.parametrize("codec", [c.value for c in Compression])
def test_split_batches_equal_one_thread(codec: int) -> None:
    for rules in (KEY_RULES, (*KEY_RULES, DETECTOR_RULE)):
        inline = GrantMasker(grant_with(*rules), SECRET, parallel=False)
        split = _slow_thread(_started(GrantMasker(grant_with(*rules), SECRET, parallel=True)))
        try:
            one = _records(codec)
            # the worker masks each big batch's values from the end and meets this thread
            for data, shares in ((one, 1), (one + _records(codec, base=100 + COUNT), 3)):
                expected, got = inline.mask("orders", 0, data), split.mask("orders", 0, data)
                assert got.records == expected.records
                assert got.counts == expected.counts
                assert got.counts["records_seen"] == len(data) // len(one) * COUNT
                assert got.counts["email"] > 0
                assert split._worker is not None and split._worker.shares == shares
        finally:
            split.close()


@pytest.mark.parametrize("codec", [c.value for c in Compression])
def test_many_small_batches_are_split_at_batch_boundaries(codec: int) -> None:
    inline = GrantMasker(grant_with(*KEY_RULES, DETECTOR_RULE), SECRET, parallel=False)
    split = _slow_thread(
        _started(GrantMasker(grant_with(*KEY_RULES, DETECTOR_RULE), SECRET, parallel=True)))
    try:
        data = _small_batches(codec)
        truncated = data + _records(codec, 10)[:-5]  # a cut-off last batch is left out
        for records in (data, truncated):
            expected, got = inline.mask("orders", 0, records), split.mask("orders", 0, records)
            assert got.records == expected.records
            assert got.counts == expected.counts
            assert got.counts["records_seen"] == 24 * 40
        assert split._worker is not None and split._worker.shares == 2
    finally:
        split.close()


def test_transaction_markers_in_the_workers_share_pass_untouched() -> None:
    marker = RecordBatch(2000, 0, 0x30, 0, 1_700_000_000_000, 1_700_000_000_000, 77, 2, -1,
                         [Record(0, 0, 0, struct.pack(">hh", 0, 1), struct.pack(">hi", 0, 1))])
    data = _small_batches(Compression.LZ4) + bytes(encode_batch(marker))
    inline = GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=False)
    split = _slow_thread(_started(GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=True)))
    try:
        expected, got = inline.mask("orders", 0, data), split.mask("orders", 0, data)
        assert got.records == expected.records
        assert got.counts == expected.counts
        assert got.records.endswith(bytes(encode_batch(marker)))
        assert split._worker is not None and split._worker.shares == 1
    finally:
        split.close()


def test_worker_starts_only_for_large_batches_and_stops_with_close() -> None:
    masker = GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=True)
    masker.mask("orders", 0, _records(0, SPLIT_MIN_RECORDS - 1))
    assert masker.worker_pid is None
    masker.mask("orders", 0, _records(0))  # starts the worker; this batch is masked inline
    pid = masker.worker_pid
    assert pid is not None
    _started(masker)
    masker.close()
    assert masker.worker_pid is None
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    assert GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=False).worker_pid is None


def test_the_key_reaches_the_worker_only_through_its_socket(parallel: GrantMasker) -> None:
    pid = parallel.worker_pid
    assert pid is not None
    worker = parallel._worker
    assert worker is not None and worker._hash_key
    for name in ("cmdline", "environ"):
        seen = Path(f"/proc/{pid}/{name}").read_bytes()
        assert SECRET not in seen
        assert worker._hash_key not in seen
        assert worker._hash_key.hex().encode() not in seen


@pytest.mark.parametrize("many", [False, True], ids=["one-batch", "many-batches"])
def test_a_dead_worker_leaves_the_work_to_this_thread(parallel: GrantMasker, many: bool) -> None:
    data = _small_batches(Compression.ZSTD) if many else _records(Compression.ZSTD)
    expected = GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=False).mask("orders", 0, data)
    pid = parallel.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    # nothing of the worker's was taken, so this thread masks every value itself
    assert parallel.mask("orders", 0, data).records == expected.records
    assert parallel.worker_pid is None
    assert parallel.mask("orders", 0, data).records == expected.records


@contextmanager
def _stopped(worker: MaskingWorker) -> Iterator[None]:
    """The worker, ready and then frozen (SIGSTOP); killed afterwards whatever happened."""
    assert worker.available(wait=30.0)
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("kind", ["values", "batches"])
def test_a_stuck_worker_is_never_waited_for_and_is_stopped(kind: str) -> None:
    worker = MaskingWorker(KEY_RULES, b"k" * 32, max_decompressed=1 << 20, timeout=0.5)
    with _stopped(worker):
        if kind == "values":
            worker.submit_values("orders", *_share([b'{"customer":{"email":"a@b"}}'] * 100))
        else:
            worker.submit_batches("orders", _small_batches(0))
        assert worker.poll_chunks() == {}
        assert worker.take_chunks(0, {}) is None
        worker.finish_share()
        assert not worker.available()  # still stopping its share: the caller works alone
        time.sleep(0.6)
        assert not worker.available()
        assert worker.broken and worker.pid is None


def test_a_value_the_worker_cannot_mask_leaves_the_rest_to_the_caller() -> None:
    worker = MaskingWorker((rule(name="x", fields=("a",), strategy="hash"),), b"k" * 32,
                         max_decompressed=1 << 20)
    try:
        assert worker.available(wait=30.0)
        worker.submit_values("elsewhere", *_share([b'{"a":1}']))  # no rule covers it there
        assert _until_done(worker) == {}
        assert worker.take_chunks(0, {}) is None
        worker.finish_share()
        assert worker.available() and not worker.broken
        worker.submit_values("orders", *_share([b'{"a":"v"}', b"{}", None] * 40))
        chunks = _until_done(worker)
        assert len(chunks) == 3  # 32 values a chunk, the last one back first
        counts: dict[str, int] = {}
        out = worker.take_chunks(0, counts)
        assert out is not None and len(out) == 80
        assert all(v is None for v in out[1::2])
        assert all(v is not None and v.startswith(b'{"a":"hmac:') for v in out[0::2])
        assert counts == {"x": 40}
        worker.finish_share()
        assert worker.available()
    finally:
        worker.close()


def test_large_batches_through_the_tunnel_are_masked_by_both_processes(
    kafka: KafkaCluster, unique_topic: str
) -> None:
    topic = unique_topic
    kafka.create_topic(topic, partitions=1, replication=1)
    planted: list[str] = []
    for codec in ("none", "zstd"):
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "compression.type": codec,
                             "linger.ms": 200, "batch.num.messages": 10_000,
                             "broker.address.family": "v4"})
        for i in range(COUNT):
            email = f"{codec}{i}@planted.example.com"
            planted.append(email)
            producer.produce(topic, json.dumps({"customer": {"email": email}}).encode(),
                             partition=0)
        assert producer.flush(30) == 0
    rules = (MaskingRule(topics=(topic,), fields=("customer.email",), strategy="hash",
                         name="email"),)
    grant = make_grant(topics=(topic,), ops=("read", "describe"), bootstrap=kafka.bootstrap,
                       masking=rules)
    # the tunnel thread is slowed so that the worker surely does part of the work
    masker = _slow_thread(_started(GrantMasker(grant, SECRET, parallel=True)), 0.001, topic)
    observer = CapturingObserver()
    with TunnelThread(Tunnel(grant, None, masker=masker, observer=observer)) as handle:
        consumer = Consumer({"bootstrap.servers": handle.bootstrap or "",
                             "group.id": f"par-{uuid.uuid4().hex[:6]}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "broker.address.family": "v4"})
        got: list[bytes] = []
        try:
            consumer.subscribe([topic])
            for _ in range(60):
                if len(got) >= 2 * COUNT:
                    break
                for message in consumer.consume(1000, 1.0):
                    assert not message.error(), message.error()
                    got.append(message.value() or b"")
        finally:
            consumer.close()
        assert masker._worker is not None and masker._worker.shares > 0
        assert handle.tunnel.stats.partitions_mask_failed == 0
    assert masker.worker_pid is None  # stopped with the tunnel
    assert len(got) == 2 * COUNT
    assert all(json.loads(v)["customer"]["email"].startswith("hmac:") for v in got)
    sent = b"".join(got)
    for records in observer.fetched:
        sent += records
        for batch in decode_batches(records)[0]:
            sent += b"".join(r.value or b"" for r in batch.records)
    assert not [s for s in planted if s.encode() in sent]


def test_an_answer_out_of_shape_fails_closed() -> None:
    worker = MaskingWorker(KEY_RULES, b"k" * 32, max_decompressed=1 << 20)
    try:
        assert worker.available(wait=30.0)
        worker.submit_values("orders", *_share([b'{"customer":{"email":"a@b"}}'] * 40))
        with pytest.raises(MaskingError, match="unexpected"):
            worker._take_message((0, "not a list", {}, 40))
        assert worker.broken and worker.pid is None
    finally:
        worker.close()


@pytest.mark.parametrize("many", [False, True], ids=["one-batch", "many-batches"])
def test_a_short_answer_fails_the_partition_closed(
    parallel: GrantMasker, many: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = MaskingWorker.take_chunks

    def short(self: MaskingWorker, first: int, counts: dict[str, int]) -> list[bytes | None] | None:
        taken = real(self, first, counts)
        return None if taken is None else taken[:-1]

    monkeypatch.setattr(MaskingWorker, "take_chunks", short)
    _slow_thread(parallel)
    data = _small_batches(0) if many else _records(0)
    with pytest.raises(MaskingError):
        parallel.mask("orders", 0, data)


@pytest.mark.timeout(60)
def test_a_stopped_worker_costs_a_large_share_at_most_a_second() -> None:
    """A share far larger than the socket's buffer, to a worker that cannot read it."""
    worker = MaskingWorker(KEY_RULES, b"k" * 32, max_decompressed=64 << 20)
    with _stopped(worker):
        started = time.monotonic()
        with pytest.raises(MaskingError, match="could not take work"):
            worker.submit_batches("orders", os.urandom(8 << 20))
        assert time.monotonic() - started < 5
        assert worker.broken and worker.pid is None


def test_an_empty_chunk_from_the_worker_fails_closed() -> None:
    worker = MaskingWorker(KEY_RULES, b"k" * 32, max_decompressed=1 << 20)
    try:
        worker._share_size = 10
        with pytest.raises(MaskingError, match="unexpected"):
            worker._take_message((0, [], {}, 10))
    finally:
        worker.close(kill=True)


def test_a_streamctl_folder_in_the_current_directory_is_not_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    fake = tmp_path / "streamctl" / "masking"
    fake.mkdir(parents=True)
    (tmp_path / "streamctl" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "worker.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    masker = _started(GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=True))
    try:
        data = _records(0)
        single = GrantMasker(grant_with(*KEY_RULES), SECRET, parallel=False)
        assert masker.mask("orders", 0, data).records == single.mask("orders", 0, data).records
    finally:
        masker.close()
    assert not marker.exists()
