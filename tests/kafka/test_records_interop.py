"""Record batches built by kafka-python and aiokafka decode with ours, and ours with theirs."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

from bench import kafka_python_codecs
from streamctl.kafka.compression import Compression
from streamctl.kafka.records import Record, RecordBatch, decode_batches, encode_batch

kafka_python_codecs.install()

CODECS = list(Compression)
# Every test runs through the C record codec and through the pure-Python reference.
pytestmark = pytest.mark.usefixtures("record_codec")
TS = 1_700_000_000_000


def _sample(i: int) -> tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]]]:
    key = None if i % 3 == 0 else b"key-%d" % i
    value = None if i == 4 else b'{"n": %d, "pad": "%s"}' % (i, b"z" * (i * 37 % 500))
    headers = [("trace", b"t-%d" % i), ("\u00e9t\u00e9", b"")] if i % 2 else []
    return i, TS + i * 3, key, value, headers


@pytest.mark.parametrize("builder_cls", [KpBuilder, AioBuilder], ids=["kafka-python", "aiokafka"])
@pytest.mark.parametrize("codec", CODECS, ids=[c.name.lower() for c in CODECS])
@pytest.mark.parametrize("transactional", [False, True])
def test_theirs_decode_with_ours(builder_cls: type, codec: int, transactional: bool) -> None:
    builder = builder_cls(2, codec, transactional, 4242 if transactional else -1,
                          7 if transactional else -1, 11 if transactional else -1, 1 << 22)
    samples = [_sample(i) for i in range(40)]
    for offset, ts, key, value, headers in samples:
        builder.append(offset, ts, key, value, headers)
    data = bytes(builder.build())
    (batch,), tail = decode_batches(data)
    assert tail == b""
    assert batch.compression == codec
    assert batch.is_transactional == transactional
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (
        (4242, 7, 11) if transactional else (-1, -1, -1))
    assert (batch.first_timestamp, batch.max_timestamp, batch.last_offset_delta) == (
        TS, TS + 39 * 3, 39)
    got = [(batch.offset_of(r), batch.timestamp_of(r), r.key, r.value, list(r.headers))
           for r in batch.records]
    assert got == samples
    if codec == Compression.NONE:
        assert bytes(encode_batch(batch)) == data


def _ours(codec: int, transactional: bool, control: bool = False) -> tuple[RecordBatch, bytes]:
    records = [
        Record(0, ts - TS, offset, key, value, tuple(headers))
        for offset, ts, key, value, headers in (_sample(i) for i in range(40))
    ]
    attributes = codec | (0x10 if transactional else 0) | (0x20 if control else 0)
    batch = RecordBatch(1000, 5, attributes, 39, TS, TS + 39 * 3,
                        4242 if transactional else -1, 7 if transactional else -1,
                        11 if transactional else -1, records)
    return batch, bytes(encode_batch(batch))


@pytest.mark.parametrize("reader_cls", [KpBatch, AioBatch], ids=["kafka-python", "aiokafka"])
@pytest.mark.parametrize("codec", CODECS, ids=[c.name.lower() for c in CODECS])
@pytest.mark.parametrize("transactional", [False, True])
def test_ours_decode_with_theirs(reader_cls: type, codec: int, transactional: bool) -> None:
    batch, data = _ours(codec, transactional)
    theirs = reader_cls(bytearray(data))
    assert theirs.validate_crc()
    assert theirs.base_offset == 1000
    assert theirs.compression_type == codec
    assert theirs.is_transactional == transactional
    assert theirs.producer_id == batch.producer_id
    assert theirs.base_sequence == batch.base_sequence
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in theirs]
    assert got == [
        (1000 + offset, ts, key, value, headers)
        for offset, ts, key, value, headers in (_sample(i) for i in range(40))
    ]


def test_our_control_batch_reads_as_control_in_kafka_python() -> None:
    import struct

    commit = Record(0, 0, 0, struct.pack(">hh", 0, 1), struct.pack(">hi", 0, 3))
    batch = RecordBatch(50, 0, 0x30, 0, TS, TS, 4242, 7, -1, [commit])
    theirs = KpBatch(bytearray(encode_batch(batch)))
    assert theirs.is_control_batch and theirs.is_transactional
    (record,) = list(theirs)
    assert record.commit
