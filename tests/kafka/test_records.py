"""Record batches: round trips across every codec, faithful fields, hostile input."""

from __future__ import annotations

import random
import struct
import tracemalloc

import cramjam
import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamctl.kafka import compression
from streamctl.kafka.compression import Compression
from streamctl.kafka.errors import KafkaProtocolError
from streamctl.kafka.records import (
    CRC32C_HARDWARE,
    HEADER_SIZE,
    LegacyRecordsError,
    Record,
    RecordBatch,
    RecordsError,
    decode_batch,
    decode_batches,
    encode_batch,
    encode_batches,
    iter_batch_headers,
)

CODECS = list(Compression)
# Every test runs through the C record codec and through the pure-Python reference.
pytestmark = pytest.mark.usefixtures("record_codec")

header_keys = st.text(max_size=12)
blobs = st.binary(max_size=300)
# Large values (three-byte varint lengths, multi-block snappy) without eating hypothesis entropy.
big_values = st.integers(0, 2**32).map(lambda seed: random.Random(seed).randbytes(40_000))
records_st = st.lists(
    st.builds(
        Record,
        attributes=st.integers(0, 255),
        timestamp_delta=st.integers(-(2**40), 2**40),
        offset_delta=st.integers(0, 2**31 - 1),
        key=st.none() | blobs,
        value=st.none() | blobs | big_values,
        headers=st.lists(st.tuples(header_keys, st.none() | blobs), max_size=3).map(tuple),
    ),
    max_size=25,
)


@st.composite
def batches(draw: st.DrawFn) -> RecordBatch:
    codec = draw(st.sampled_from(CODECS))
    flags = draw(st.sampled_from([0, 0x08, 0x10, 0x20, 0x30, 0x18, 0x40]))
    return RecordBatch(
        base_offset=draw(st.integers(0, 2**63 - 1)),
        partition_leader_epoch=draw(st.integers(-1, 2**31 - 1)),
        attributes=flags | codec,
        last_offset_delta=draw(st.integers(-1, 2**31 - 1)),
        first_timestamp=draw(st.integers(-1, 2**62)),
        max_timestamp=draw(st.integers(-1, 2**62)),
        producer_id=draw(st.integers(-1, 2**63 - 1)),
        producer_epoch=draw(st.integers(-1, 2**15 - 1)),
        base_sequence=draw(st.integers(-1, 2**31 - 1)),
        records=draw(records_st),
    )


def _without_crc(batch: RecordBatch) -> RecordBatch:
    batch.crc = 0
    return batch


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_round_trip_keeps_every_field(batch: RecordBatch) -> None:
    encoded = bytes(encode_batch(batch))
    decoded, tail = decode_batches(encoded)
    assert tail == b""
    assert [_without_crc(b) for b in decoded] == [batch]
    header = next(iter_batch_headers(encoded))
    assert (header.base_offset, header.attributes, header.record_count) == (
        batch.base_offset, batch.attributes, len(batch.records))
    assert header.size == len(encoded)
    assert header.is_control == batch.is_control
    assert header.is_transactional == batch.is_transactional


@settings(max_examples=60, deadline=None)
@given(batch=batches())
def test_reencoding_an_unchanged_uncompressed_batch_is_byte_identical(batch: RecordBatch) -> None:
    batch.attributes &= ~0x07
    first = bytes(encode_batch(batch))
    assert bytes(encode_batch(decode_batch(first))) == first


@settings(max_examples=40, deadline=None)
@given(many=st.lists(batches(), min_size=1, max_size=4), cut=st.integers(1, 60))
def test_truncated_final_batch_comes_back_untouched(many: list[RecordBatch], cut: int) -> None:
    whole = encode_batches(many)
    last = bytes(encode_batch(many[-1]))
    truncated = whole[: len(whole) - min(cut, len(last) - 1)]
    decoded, tail = decode_batches(truncated)
    assert len(decoded) == len(many) - 1
    assert tail == truncated[len(whole) - len(last) :]
    assert len(list(iter_batch_headers(truncated))) == len(many) - 1


def test_control_and_transactional_batches_survive() -> None:
    commit_marker = Record(0, 0, 0, struct.pack(">hh", 0, 1), struct.pack(">hi", 0, 7))
    control = RecordBatch(42, 3, 0x30, 0, 1_700_000_000_000, 1_700_000_000_000, 9001, 2, -1,
                          [commit_marker])
    data = bytes(encode_batch(control))
    (back,), _ = decode_batches(data)
    assert back.is_control and back.is_transactional
    assert (back.producer_id, back.producer_epoch, back.base_offset) == (9001, 2, 42)
    assert back.records == [commit_marker]


def test_absolute_offsets_and_timestamps() -> None:
    rec = Record(0, 5, 3, None, b"v")
    create = RecordBatch(100, 0, 0, 3, 1000, 1005, -1, -1, -1, [rec])
    assert create.offset_of(rec) == 103 and create.timestamp_of(rec) == 1005
    log_append = RecordBatch(100, 0, 0x08, 3, 1000, 2000, -1, -1, -1, [rec])
    assert log_append.timestamp_type == 1 and log_append.timestamp_of(rec) == 2000


def test_empty_batch_keeps_its_offset_delta() -> None:
    """Compaction can leave batches with no records; last offset delta must not be recomputed."""
    empty = RecordBatch(10, 0, 0, 4, 1, 1, 5, 0, 0, [])
    (back,), _ = decode_batches(bytes(encode_batch(empty)))
    assert back.last_offset_delta == 4 and back.records == []


def test_crc32c_is_the_c_extension() -> None:
    assert crc32c.crc32c.__module__ in {"crc32c._crc32c", "crc32c"}
    import crc32c._crc32c as native

    assert native.__file__.endswith((".so", ".pyd"))
    assert isinstance(CRC32C_HARDWARE, bool)
    assert crc32c.crc32c(b"123456789") == 0xE3069283


def test_records_error_is_a_protocol_error() -> None:
    assert issubclass(RecordsError, KafkaProtocolError)
    assert issubclass(LegacyRecordsError, RecordsError)


# ---- malformed input -------------------------------------------------------------------


def _batch_bytes(codec: int = 0, n: int = 3) -> bytes:
    records = [Record(0, i, i, b"k%d" % i, b"value-%d" % i * 10, (("h", b"x"),)) for i in range(n)]
    return bytes(encode_batch(RecordBatch(0, 0, codec, n - 1, 1, 1, -1, -1, -1, records)))


def _fix_crc(data: bytearray) -> bytes:
    struct.pack_into(">I", data, 17, crc32c.crc32c(memoryview(data)[21:]))
    return bytes(data)


def _with_section(section: bytes, count: int, attributes: int = 0) -> bytes:
    out = bytearray(HEADER_SIZE) + section
    struct.pack_into(">qiibIhiqqqhii", out, 0, 0, len(out) - 12, 0, 2, 0, attributes,
                     max(count - 1, 0), 0, 0, -1, -1, -1, count)
    return _fix_crc(out)


def test_bad_crc_is_refused() -> None:
    data = bytearray(_batch_bytes())
    data[-3] ^= 0xFF
    with pytest.raises(RecordsError, match="CRC32C"):
        decode_batches(bytes(data))


def test_bad_varint_is_refused() -> None:
    with pytest.raises(RecordsError, match="varint"):
        decode_batches(_with_section(b"\xff" * 12, 1))


def test_impossible_lengths_are_refused() -> None:
    good = bytearray(_batch_bytes())
    for bad_length in (-5, 3, 48):
        data = bytearray(good)
        struct.pack_into(">i", data, 8, bad_length)
        with pytest.raises(RecordsError):
            decode_batches(bytes(data))
        with pytest.raises(RecordsError):
            list(iter_batch_headers(bytes(data)))
    with pytest.raises(RecordsError, match="impossible count"):
        decode_batches(_with_section(b"\x00" * 20, 2**31 - 1))
    with pytest.raises(RecordsError):  # record length beyond the batch
        decode_batches(_with_section(b"\xfe\x0f" + b"\x00" * 10, 1))
    with pytest.raises(RecordsError):  # negative key length other than -1
        decode_batches(_with_section(b"\x0c\x00\x00\x00\x03" + b"\x00" * 5, 1))
    with pytest.raises(RecordsError, match="after the last record"):
        data = bytearray(_batch_bytes(n=1)) + b"\x00\x00"
        struct.pack_into(">i", data, 8, len(data) - 12)
        decode_batches(_fix_crc(data))


@pytest.mark.parametrize("codec_bits", [5, 6, 7])
def test_unknown_codec_is_refused(codec_bits: int) -> None:
    data = bytearray(_batch_bytes())
    struct.pack_into(">h", data, 21, codec_bits)
    with pytest.raises(RecordsError, match="unknown codec"):
        decode_batches(_fix_crc(data))


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_corrupt_compressed_data_is_refused(codec: int) -> None:
    with pytest.raises(RecordsError):
        decode_batches(_with_section(b"\x82SNAPPY\x00garbage-garbage-garbage", 1, codec))


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_decompression_bomb_is_bounded(codec: int) -> None:
    limit = 1 << 20
    bomb = compression.compress(codec, bytes(16 << 20))
    data = _with_section(bomb, 1, codec)
    tracemalloc.start()
    try:
        with pytest.raises(RecordsError, match=r"more than|or more|over the"):
            decode_batches(data, max_decompressed=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * limit + 2 * len(data)


def test_raw_snappy_is_read_too() -> None:
    section = bytearray()
    encoded_records = bytes(_batch_bytes())[HEADER_SIZE:]
    section += bytes(cramjam.snappy.compress_raw(encoded_records))
    (batch,), _ = decode_batches(_with_section(bytes(section), 3, Compression.SNAPPY))
    assert [r.key for r in batch.records] == [b"k0", b"k1", b"k2"]


def test_legacy_message_sets_are_reported_not_decoded() -> None:
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

    for magic in (0, 1):
        builder = LegacyRecordBatchBuilder(magic, 0, 1 << 20)
        builder.append(0, 1_700_000_000_000 if magic else None, b"k", b"v")
        legacy = bytes(builder.build())
        with pytest.raises(LegacyRecordsError):
            decode_batches(legacy)
        (header,) = iter_batch_headers(legacy)
        assert header.magic == magic and header.size == len(legacy)
        assert header.record_count == -1


def test_random_bytes_only_ever_raise_records_error() -> None:
    rng = random.Random(1234)
    seeds = [_batch_bytes(c) for c in range(5)]
    for i in range(3000):
        if i % 3 == 0:
            blob = rng.randbytes(rng.randrange(0, 200))
        else:
            blob = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            blob = _fix_crc(blob) if i % 2 else bytes(blob)
        try:
            decode_batches(blob, max_decompressed=1 << 20)
            list(iter_batch_headers(blob))
        except RecordsError:
            pass


def test_lying_size_hint_does_not_lift_the_bound() -> None:
    limit = 1 << 20
    bomb = bytearray(compression.compress(Compression.GZIP, bytes(16 << 20)))
    bomb[-4:] = (100).to_bytes(4, "little")  # gzip ISIZE claims 100 bytes
    with pytest.raises(RecordsError, match=r"more than|or more"):
        decode_batches(_with_section(bytes(bomb), 1, Compression.GZIP), max_decompressed=limit)


@settings(max_examples=60, deadline=None)
@given(batch=batches(), data=st.data())
def test_changed_records_are_reencoded_and_unchanged_ones_reused(
    batch: RecordBatch, data: st.DataObject
) -> None:
    (decoded,), _ = decode_batches(bytes(encode_batch(batch)))
    expected = list(batch.records)
    for i in data.draw(st.sets(st.integers(0, max(len(expected) - 1, 0)))):
        if i < len(expected):
            changed = expected[i]._replace(value=b"masked-%d" % i, headers=(("m", b"1"),))
            expected[i] = changed
            decoded.records[i] = changed
    if data.draw(st.booleans()) and expected:
        extra = Record(0, 1, len(expected), None, b"appended")
        expected.append(extra)
        decoded.records.append(extra)
        decoded.last_offset_delta = batch.last_offset_delta
    reused = bytes(encode_batch(decoded))
    (again,), _ = decode_batches(reused)
    assert again.records == expected
    if not decoded.compression:
        assert reused == bytes(encode_batch(decoded, reuse_unchanged=False))


def test_lz4_frames_use_independent_blocks_as_kafkas_java_reader_requires() -> None:
    for data in (b"", b"abc", bytes(range(256)) * 2000):
        frame = compression.compress(Compression.LZ4, data)
        assert frame[:4] == b"\x04\x22\x4d\x18"
        flags = frame[4]
        assert flags >> 6 == 1  # frame version 01
        assert flags & 0x20  # block independence
        assert not flags & 0x03  # reserved bits and dictionary id unset
        assert compression.decompress(Compression.LZ4, frame) == data


def test_header_keys_that_are_not_utf8_survive_byte_for_byte() -> None:
    record = Record(0, 0, 0, None, b"v", (("ok", b"1"),))
    data = bytearray(encode_batch(RecordBatch(0, 0, 0, 0, 1, 1, -1, -1, -1, [record])))
    at = data.index(b"ok")
    data[at : at + 2] = b"\xff\xfe"  # same length, invalid UTF-8
    fixed = _fix_crc(data)
    (batch,), _ = decode_batches(fixed)
    assert batch.records[0].headers[0][0].encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert bytes(encode_batch(batch, reuse_unchanged=False)) == fixed
