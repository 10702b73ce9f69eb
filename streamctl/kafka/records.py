"""Magic-2 record batches: decode and re-encode keeping every field, fast, on hostile input.

This is the Fetch hot path of masking, so it is written for CPython speed: one precompiled
`struct.Struct` for the 61-byte batch header, varints decoded inline, records built as
plain tuples. Everything the broker put in a batch survives a decode/encode round trip:
base offset, partition leader epoch, the whole attributes word (codec, timestamp type,
transactional and control bits, and any bit we do not know), last offset delta, first and
max timestamps, producer id/epoch, base sequence, and per record its attributes, deltas,
key, value and headers. Re-encoding an unchanged uncompressed batch gives identical bytes.

Layout (all big-endian; CRC32C covers attributes to the end of the batch):

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 |
    crc uint32 | attributes int16 | lastOffsetDelta int32 | firstTimestamp int64 |
    maxTimestamp int64 | producerId int64 | producerEpoch int16 | baseSequence int32 |
    recordCount int32 | records...

    record: length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
            keyLength varint | key | valueLength varint | value | headerCount varint |
            [headerKeyLength varint | headerKey | headerValueLength varint | headerValue]

A truncated final batch (normal at the end of a Fetch response) is returned as an untouched
tail. Legacy magic 0/1 message sets are never rewritten: `decode_batches` reports them with
`LegacyRecordsError` and `iter_batch_headers` describes them so a caller can pass them on.

The three per-record loops (decode, encode, layout) also exist in C, in the `_records_c`
extension built with the package: the functions here are the reference it must match
exactly and the fallback when it is missing or STREAMCTL_PURE_PYTHON=1 is set.
`RECORDS_ACCELERATED` says which one runs.
"""

from __future__ import annotations

import operator
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import crc32c as _crc32c_module

from streamctl.kafka.compression import (
    DEFAULT_MAX_DECOMPRESSED,
    Compression,
    CompressionError,
    compress,
    decompress,
)
from streamctl.kafka.errors import KafkaProtocolError

__all__ = [
    "CRC32C_HARDWARE",
    "DEFAULT_MAX_DECOMPRESSED",
    "RECORDS_ACCELERATED",
    "BatchHeader",
    "Compression",
    "Header",
    "LegacyRecordsError",
    "Record",
    "RecordBatch",
    "RecordSection",
    "RecordsError",
    "decode_batch",
    "decode_batches",
    "decode_sections",
    "encode_batch",
    "encode_batches",
    "iter_batch_headers",
    "record_layout",
    "replace_values",
]

_crc32c = _crc32c_module.crc32c
#: True when the crc32c package uses SSE4.2/ARMv8 CRC instructions rather than its C table.
CRC32C_HARDWARE: bool = bool(getattr(_crc32c_module, "hardware_based", False))


class RecordsError(KafkaProtocolError):
    """Record-batch bytes are corrupt: bad CRC, bad varint, impossible length, unknown codec."""


class LegacyRecordsError(RecordsError):
    """The data holds a magic 0/1 message set, which we pass on untouched or refuse, never edit."""


#: A record header: the key as text (undecodable bytes kept via surrogateescape) and the value.
Header = tuple[str, bytes | None]

CODEC_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20

_HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = _HEADER.size  # 61
_PREFIX = struct.Struct(">qi")  # base offset, batch length
_PREFIX_SIZE = 12
_MAGIC_OFFSET = 16
_CRC_OFFSET = 17
_ATTRIBUTES_OFFSET = 21
_MIN_BATCH_LENGTH = HEADER_SIZE - _PREFIX_SIZE  # 49: a batch with no records
_MIN_RECORD_SIZE = 7  # length, attributes, ts delta, offset delta, key, value, header count
_CRC = struct.Struct(">I")
_NO_HEADERS: tuple[Header, ...] = ()


class Record(NamedTuple):
    """One record inside a batch, with offsets and timestamps relative to the batch."""

    attributes: int
    timestamp_delta: int
    offset_delta: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass(slots=True)
class RecordBatch:
    """A magic-2 record batch with every header field kept so it can be re-encoded faithfully."""

    base_offset: int
    partition_leader_epoch: int
    attributes: int
    last_offset_delta: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list[Record] = field(default_factory=list)
    crc: int = 0  # as read; encode_batch always recomputes it
    magic: int = 2
    # Where decode found the records: encode_batch copies the bytes of records that are
    # still the very objects decode made instead of serialising them again.
    _source: bytes | None = field(default=None, repr=False, compare=False)
    _starts: list[int] | None = field(default=None, repr=False, compare=False)
    _originals: tuple[Record, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def compression(self) -> Compression:
        return Compression(self.attributes & CODEC_MASK)

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime."""
        return (self.attributes & TIMESTAMP_TYPE_BIT) >> 3

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    def offset_of(self, record: Record) -> int:
        """The absolute offset of one of this batch's records."""
        return self.base_offset + record.offset_delta

    def timestamp_of(self, record: Record) -> int:
        """The record's timestamp as a consumer sees it (LogAppendTime uses the batch's)."""
        if self.attributes & TIMESTAMP_TYPE_BIT:
            return self.max_timestamp
        return self.first_timestamp + record.timestamp_delta


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """What a batch header says, read without decompressing: enough to route or skip it."""

    position: int  # where the batch starts in the buffer
    size: int  # whole batch size in bytes, including base offset and length
    base_offset: int
    magic: int
    attributes: int
    last_offset_delta: int
    record_count: int  # -1 for legacy message sets, whose count is not in the header
    producer_id: int = -1

    @property
    def compression(self) -> int:
        return self.attributes & CODEC_MASK

    @property
    def is_control(self) -> bool:
        return self.magic >= 2 and bool(self.attributes & CONTROL_BIT)

    @property
    def is_transactional(self) -> bool:
        return self.magic >= 2 and bool(self.attributes & TRANSACTIONAL_BIT)


def iter_batch_headers(data: bytes | bytearray | memoryview) -> Iterator[BatchHeader]:
    """Walk the complete batches of a records field without decompressing anything.

    Stops at a truncated final batch; raises RecordsError on an impossible length.
    Legacy (magic 0/1) message-set entries are described too, with record_count -1.
    """
    view = memoryview(data)
    end = len(view)
    pos = 0
    while end - pos >= _PREFIX_SIZE + 5:
        base_offset, length = _PREFIX.unpack_from(view, pos)
        if length < 0:
            raise RecordsError(f"record batch length {length} is impossible")
        size = _PREFIX_SIZE + length
        if pos + size > end:
            return  # truncated final batch
        magic = view[pos + _MAGIC_OFFSET]
        if magic >= 2:
            if length < _MIN_BATCH_LENGTH:
                raise RecordsError(f"record batch length {length} is impossible")
            (_, _, _, _, _, attributes, last_delta, _, _, producer_id, _, _, count) = (
                _HEADER.unpack_from(view, pos)
            )
            yield BatchHeader(pos, size, base_offset, magic, attributes & 0xFFFF, last_delta,
                              count, producer_id)
        else:
            if length < 14:  # crc, magic, attributes, key and value lengths
                raise RecordsError(f"legacy message length {length} is impossible")
            yield BatchHeader(pos, size, base_offset, magic, view[pos + 17], 0, -1)
        pos += size


class RecordSection(NamedTuple):
    """One complete batch opened but not decoded: its header and its (decompressed) records.

    `header` holds the 13 header fields in wire order (base offset, batch length, leader
    epoch, magic, crc, attributes, last offset delta, first and max timestamps, producer
    id and epoch, base sequence, record count); the records fill `data[start:end]`.
    """

    position: int  # where the batch starts in the records field
    size: int  # whole batch size in bytes, including base offset and length
    header: tuple[int, ...]
    data: bytes
    start: int
    end: int


def decode_sections(
    data: bytes | bytearray | memoryview,
    *,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    verify_crc: bool = True,
) -> tuple[list[RecordSection], bytes]:
    """Open every complete batch (CRC checked, decompressed) without building its records.

    The same checks and errors as `decode_batches`; the truncated final batch, if any,
    comes back untouched.
    """
    buf = bytes(data)
    end = len(buf)
    sections: list[RecordSection] = []
    pos = 0
    while end - pos >= _PREFIX_SIZE + 5:
        length = _PREFIX.unpack_from(buf, pos)[1]
        if length < 0:
            raise RecordsError(f"record batch length {length} is impossible")
        batch_end = pos + _PREFIX_SIZE + length
        if batch_end > end:
            break  # truncated final batch: the caller gets it back untouched
        magic = buf[pos + _MAGIC_OFFSET]
        if magic < 2:
            raise LegacyRecordsError(
                f"legacy magic {magic} message set at byte {pos}: passed through, not decoded"
            )
        if magic > 2:
            raise RecordsError(f"unknown record batch magic {magic}")
        if length < _MIN_BATCH_LENGTH:
            raise RecordsError(f"record batch length {length} is impossible")
        sections.append(_open_one(buf, pos, batch_end, max_decompressed, verify_crc))
        pos = batch_end
    return sections, buf[pos:]


def decode_batches(
    data: bytes | bytearray | memoryview,
    *,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    verify_crc: bool = True,
) -> tuple[list[RecordBatch], bytes]:
    """Decode every complete batch; the truncated final batch, if any, comes back untouched.

    Raises RecordsError on corruption and LegacyRecordsError on a magic 0/1 message set.
    """
    sections, tail = decode_sections(data, max_decompressed=max_decompressed,
                                     verify_crc=verify_crc)
    return [_batch_of(s) for s in sections], tail


def decode_batch(
    data: bytes | bytearray | memoryview,
    *,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    verify_crc: bool = True,
) -> RecordBatch:
    """Decode exactly one complete magic-2 batch (the bytes of one BatchHeader span)."""
    buf = bytes(data)
    if len(buf) < HEADER_SIZE:
        raise RecordsError(f"record batch of {len(buf)} bytes is shorter than its header")
    length = _PREFIX.unpack_from(buf, 0)[1]
    magic = buf[_MAGIC_OFFSET]
    if magic != 2:
        if magic < 2:
            raise LegacyRecordsError(f"legacy magic {magic} message set: not decoded")
        raise RecordsError(f"unknown record batch magic {magic}")
    if length != len(buf) - _PREFIX_SIZE:
        raise RecordsError(f"record batch length {length} does not match {len(buf)} bytes")
    return _decode_one(buf, 0, len(buf), max_decompressed, verify_crc)


def _decode_one(
    buf: bytes, pos: int, batch_end: int, max_decompressed: int, verify_crc: bool
) -> RecordBatch:
    """Decode the batch at buf[pos:batch_end] (length and magic already checked)."""
    return _batch_of(_open_one(buf, pos, batch_end, max_decompressed, verify_crc))


def _open_one(
    buf: bytes, pos: int, batch_end: int, max_decompressed: int, verify_crc: bool
) -> RecordSection:
    """Check and open the batch at buf[pos:batch_end] (length and magic already checked)."""
    header = _HEADER.unpack_from(buf, pos)
    base_offset, crc, attributes, count = header[0], header[4], header[5], header[12]
    if verify_crc:
        actual = _crc32c(memoryview(buf)[pos + _ATTRIBUTES_OFFSET : batch_end])
        if actual != crc:
            raise RecordsError(
                f"record batch at offset {base_offset}: CRC32C mismatch "
                f"(stored {crc:#010x}, computed {actual:#010x})"
            )
    codec = attributes & CODEC_MASK
    start = pos + HEADER_SIZE
    if codec == 0:
        section, end = buf, batch_end
    elif codec <= 4:
        try:
            section = decompress(codec, memoryview(buf)[start:batch_end], max_decompressed)
        except CompressionError as exc:
            raise RecordsError(f"record batch at offset {base_offset}: {exc}") from None
        start, end = 0, len(section)
    else:
        raise RecordsError(f"record batch at offset {base_offset}: unknown codec id {codec}")
    if count < 0 or count * _MIN_RECORD_SIZE > end - start:
        raise RecordsError(f"record batch at offset {base_offset}: impossible count {count}")
    return RecordSection(pos, batch_end - pos, header, section, start, end)


def _batch_of(opened: RecordSection) -> RecordBatch:
    """Decode the records of an opened batch into a RecordBatch."""
    (base_offset, _, leader_epoch, _, crc, attributes, last_delta, first_ts, max_ts,
     producer_id, producer_epoch, base_sequence, count) = opened.header
    section = opened.data
    starts: list[int] = []
    records = _decode_records(section, opened.start, opened.end, count, base_offset, starts)
    return RecordBatch(base_offset, leader_epoch, attributes & 0xFFFF, last_delta, first_ts,
                       max_ts, producer_id, producer_epoch, base_sequence, records, crc, 2,
                       section, starts, tuple(records))


def _py_decode_records(
    buf: bytes, pos: int, size: int, count: int, base_offset: int, starts: list[int]
) -> list[Record]:
    """Decode `count` records filling exactly buf[pos:size]; `starts` gets each one's position.

    Varints are decoded inline: one- and two-byte varints (all lengths under 8 KiB, small
    deltas) come from a precomputed zigzag table; longer ones take `_read_varint`.
    """
    records: list[Record] = []
    append = records.append
    mark = starts.append
    new = tuple.__new__
    table = _UNZIGZAG
    slow = _read_varint
    no_headers = _NO_HEADERS
    try:
        for _ in range(count):
            mark(pos)
            b = buf[pos]
            if b >= 0x80 and (c := buf[pos + 1]) < 0x80:  # two bytes: 64..8191, the usual
                length = table[(c << 7) + b - 0x80]
                pos += 2
            elif b < 0x80:
                length = table[b]
                pos += 1
            else:
                length, pos = slow(buf, pos, 5)
            rec_end = pos + length
            if length < 6 or rec_end > size:
                raise RecordsError(f"record length {length} is impossible")
            attr = buf[pos]
            b = buf[pos + 1]
            if b < 0x80:
                ts_delta = table[b]
                pos += 2
            elif (c := buf[pos + 2]) < 0x80:
                ts_delta = table[(c << 7) + b - 0x80]
                pos += 3
            else:
                ts_delta, pos = slow(buf, pos + 1, 10)
            b = buf[pos]
            if b < 0x80:
                offset_delta = table[b]
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                offset_delta = table[(c << 7) + b - 0x80]
                pos += 2
            else:
                offset_delta, pos = slow(buf, pos, 5)
            b = buf[pos]
            if b == 1:
                key = None
                pos += 1
            else:
                if b < 0x80:
                    n = table[b]
                    pos += 1
                elif (c := buf[pos + 1]) < 0x80:
                    n = table[(c << 7) + b - 0x80]
                    pos += 2
                else:
                    n, pos = slow(buf, pos, 5)
                if n < 0:
                    raise RecordsError(f"key length {n} is impossible")
                key = buf[pos : pos + n]
                pos += n
            b = buf[pos]
            if b >= 0x80 and (c := buf[pos + 1]) < 0x80:  # two bytes: 64..8191, the usual
                n = table[(c << 7) + b - 0x80]
                pos += 2
            elif b < 0x80:
                n = table[b]
                pos += 1
            else:
                n, pos = slow(buf, pos, 5)
            if n < 0:
                if n != -1:
                    raise RecordsError(f"value length {n} is impossible")
                value = None
            else:
                value = buf[pos : pos + n]
                pos += n
            if buf[pos] == 0:
                headers = no_headers
                pos += 1
            else:
                pos, headers = _decode_headers(buf, pos, rec_end)
            if pos != rec_end:
                raise RecordsError(
                    f"record at offset {base_offset + offset_delta} has length {length} "
                    f"but its fields take {length + pos - rec_end} bytes"
                )
            append(new(Record, (attr, ts_delta, offset_delta, key, value, headers)))
    except IndexError:
        raise RecordsError(f"record batch at offset {base_offset}: records truncated") from None
    if pos != size:
        raise RecordsError(
            f"record batch at offset {base_offset}: {size - pos} bytes after the last record"
        )
    mark(pos)
    return records


#: Ints per record in a `record_layout` list.
LAYOUT_STRIDE = 7


def record_layout(opened: RecordSection) -> list[int]:
    """Where every record's parts sit in `opened.data`, checked as strictly as decoding.

    Seven ints per record (LAYOUT_STRIDE): record start, body start (after the length
    varint), key position, key length (-1 for null), value-length position, value position,
    value length (-1 for null); then one more int, the end of the last record. Nothing is
    copied and no object is built per record, for callers that only digest or replace
    values (transcripts, masking).
    """
    header = opened.header
    return _layout_records(opened.data, opened.start, opened.end, header[12], header[0])


def _py_layout_records(buf: bytes, pos: int, size: int, count: int, base_offset: int
                       ) -> list[int]:
    """`record_layout` of the `count` records filling exactly buf[pos:size]."""
    layout: list[int] = []
    add = layout.extend
    table = _UNZIGZAG
    slow = _read_varint
    try:
        for _ in range(count):
            rec_start = pos
            b = buf[pos]
            if b < 0x80:
                length = table[b]
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                length = table[(c << 7) + b - 0x80]
                pos += 2
            else:
                length, pos = slow(buf, pos, 5)
            body = pos
            rec_end = pos + length
            if length < 6 or rec_end > size:
                raise RecordsError(f"record length {length} is impossible")
            b = buf[pos + 1]  # after the attributes byte: the timestamp delta
            if b < 0x80:
                pos += 2
            elif buf[pos + 2] < 0x80:
                pos += 3
            else:
                pos = slow(buf, pos + 1, 10)[1]
            b = buf[pos]  # offset delta
            if b < 0x80:
                offset_delta = table[b]
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                offset_delta = table[(c << 7) + b - 0x80]
                pos += 2
            else:
                offset_delta, pos = slow(buf, pos, 5)
            b = buf[pos]
            if b == 1:
                key_len = -1
                pos += 1
            else:
                if b < 0x80:
                    key_len = table[b]
                    pos += 1
                elif (c := buf[pos + 1]) < 0x80:
                    key_len = table[(c << 7) + b - 0x80]
                    pos += 2
                else:
                    key_len, pos = slow(buf, pos, 5)
                if key_len < 0:
                    raise RecordsError(f"key length {key_len} is impossible")
            key_pos = pos
            if key_len > 0:
                pos += key_len
            value_len_pos = pos
            b = buf[pos]
            if b < 0x80:
                n = table[b]
                pos += 1
            elif (c := buf[pos + 1]) < 0x80:
                n = table[(c << 7) + b - 0x80]
                pos += 2
            else:
                n, pos = slow(buf, pos, 5)
            value_pos = pos
            if n < 0:
                if n != -1:
                    raise RecordsError(f"value length {n} is impossible")
            else:
                pos += n
            if pos >= rec_end:
                raise RecordsError(
                    f"record at offset {base_offset + offset_delta} has length {length} "
                    "but its fields take more bytes"
                )
            if buf[pos] == 0:
                pos += 1
            else:
                pos = _decode_headers(buf, pos, rec_end)[0]
            if pos != rec_end:
                raise RecordsError(
                    f"record at offset {base_offset + offset_delta} has length {length} "
                    f"but its fields take {length + pos - rec_end} bytes"
                )
            add((rec_start, body, key_pos, key_len, value_len_pos, value_pos, n))
    except IndexError:
        raise RecordsError(f"record batch at offset {base_offset}: records truncated") from None
    if pos != size:
        raise RecordsError(
            f"record batch at offset {base_offset}: {size - pos} bytes after the last record"
        )
    layout.append(pos)
    return layout


_Context = TypeVar("_Context")


def replace_values(
    opened: RecordSection, transform: Callable[[bytes, _Context], bytes], context: _Context
) -> bytearray | None:
    """The batch re-encoded with each non-empty value replaced by `transform(value, context)`.

    `transform` returns its argument itself for a value it leaves alone; when it does so
    for every record the answer is None (the caller keeps the original bytes). Runs of
    unchanged records are copied as they are; a changed record keeps its attributes,
    deltas, key and headers byte for byte and gets new value and record lengths. The
    batch header is kept except its length and CRC, and the same codec is used again.
    """
    layout = record_layout(opened)
    buf = opened.data
    parts: list[bytes] = [_HEADER_PLACEHOLDER]
    append = parts.append
    table = _ZZ_TABLE
    slow = _zigzag_bytes
    run_start = -1  # start of the current run of unchanged records, -1 when none
    changed = False
    for i in range(0, len(layout) - 1, LAYOUT_STRIDE):
        value_len = layout[i + 6]
        if value_len > 0:
            value_pos = layout[i + 5]
            value = buf[value_pos : value_pos + value_len]
            new = transform(value, context)
            if new is not value:
                if run_start >= 0:
                    append(buf[run_start : layout[i]])
                    run_start = -1
                changed = True
                body = layout[i + 1]
                rec_end = layout[i + LAYOUT_STRIDE]
                n = len(new)
                z = n << 1
                vlen = table[z] if z < 16384 else slow(n)
                length = (layout[i + 4] - body) + len(vlen) + n + (rec_end - value_pos - value_len)
                z = length << 1
                append(table[z] if z < 16384 else slow(length))
                append(buf[body : layout[i + 4]])
                append(vlen)
                append(new)
                append(buf[value_pos + value_len : rec_end])
                continue
        if run_start < 0:
            run_start = layout[i]
    if not changed:
        return None
    if run_start >= 0:
        append(buf[run_start : layout[-1]])
    header = opened.header
    attributes = header[5]
    codec = attributes & CODEC_MASK
    if codec:
        out = bytearray().join((_HEADER_PLACEHOLDER, compress(codec, b"".join(parts[1:]))))
    else:
        out = bytearray().join(parts)
    _HEADER.pack_into(out, 0, header[0], len(out) - _PREFIX_SIZE, *header[2:4], 0,
                      *header[5:])
    _CRC.pack_into(out, _CRC_OFFSET, _crc32c(memoryview(out)[_ATTRIBUTES_OFFSET:]))
    return out


#: Zigzag-decoded values of every one- and two-byte varint, indexed by its 14 payload bits.
_UNZIGZAG: list[int] = [(raw >> 1) ^ -(raw & 1) for raw in range(1 << 14)]


def _read_varint(buf: bytes, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """Zigzag varint of at most `max_bytes` bytes (5: int32, 10: int64): (value, new position).

    A ten-byte varlong must fit in 64 bits: a re-encoded wider one would be invalid.
    """
    v = 0
    shift = 0
    limit = 7 * max_bytes
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            if shift == 63 and b > 1:
                raise RecordsError("varint does not fit in 64 bits")
            return (v >> 1) ^ -(v & 1), pos
        shift += 7
        if shift >= limit:
            raise RecordsError(f"varint longer than {max_bytes} bytes")


def _decode_headers(buf: bytes, pos: int, rec_end: int) -> tuple[int, tuple[Header, ...]]:
    """Decode a record's header array starting at its count varint."""
    count, pos = _read_varint(buf, pos)
    if count < 0 or count * 2 > rec_end - pos:
        raise RecordsError(f"record header count {count} is impossible")
    headers: list[Header] = []
    for _ in range(count):
        n, pos = _read_varint(buf, pos)
        if n < 0 or pos + n > rec_end:
            raise RecordsError(f"record header key length {n} is impossible")
        hkey = buf[pos : pos + n].decode("utf-8", "surrogateescape")
        pos += n
        n, pos = _read_varint(buf, pos)
        if n < 0:
            if n != -1:
                raise RecordsError(f"record header value length {n} is impossible")
            hvalue = None
        else:
            if pos + n > rec_end:
                raise RecordsError(f"record header value length {n} is impossible")
            hvalue = buf[pos : pos + n]
            pos += n
        headers.append((hkey, hvalue))
    return pos, tuple(headers)


def _zigzag_bytes(value: int) -> bytes:
    """Encode a signed integer as a zigzag varint (the slow path of the encoder's table)."""
    z = (value << 1) ^ (value >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


#: Encoded zigzag varints for zigzag values 0..16383 (all one- and two-byte varints).
_ZZ_TABLE: list[bytes] = [
    _zigzag_bytes((z >> 1) ^ -(z & 1)) for z in range(1 << 14)
]
_ATTR_BYTES: list[bytes] = [bytes((i,)) for i in range(256)]


def encode_batch(batch: RecordBatch, *, reuse_unchanged: bool = True) -> bytearray:
    """Encode a batch with its own codec; the record count, length and CRC32C are recomputed.

    Records that are still the objects `decode_batches` produced keep their original bytes
    (copied, not serialised again) unless `reuse_unchanged` is False. Returns a bytearray,
    built in one allocation as kafka-python's and aiokafka's builders do.
    """
    attributes = batch.attributes & 0xFFFF
    codec = attributes & CODEC_MASK
    if codec > 4:
        raise RecordsError(f"cannot encode unknown codec id {codec}")
    parts: list[bytes] = [_HEADER_PLACEHOLDER]
    originals = batch._originals
    if reuse_unchanged and originals is not None:
        _reuse_or_encode(batch.records, originals, batch._source or b"", batch._starts or [],
                         parts)
    else:
        _encode_records(batch.records, parts)
    if codec:
        out = bytearray().join((_HEADER_PLACEHOLDER, compress(codec, b"".join(parts[1:]))))
    else:
        out = bytearray().join(parts)
    _HEADER.pack_into(
        out, 0, batch.base_offset, len(out) - _PREFIX_SIZE,
        batch.partition_leader_epoch, 2, 0,
        attributes - 0x10000 if attributes & 0x8000 else attributes, batch.last_offset_delta,
        batch.first_timestamp, batch.max_timestamp, batch.producer_id, batch.producer_epoch,
        batch.base_sequence, len(batch.records),
    )
    _CRC.pack_into(out, _CRC_OFFSET, _crc32c(memoryview(out)[_ATTRIBUTES_OFFSET:]))
    return out


def encode_batches(batches: Sequence[RecordBatch], tail: bytes = b"") -> bytes:
    """Encode several batches back into one records field, tail (if any) appended untouched."""
    return b"".join([*(encode_batch(b) for b in batches), tail])


_HEADER_PLACEHOLDER = bytes(HEADER_SIZE)


def _reuse_or_encode(records: Sequence[Record], originals: Sequence[Record], source: bytes,
                     starts: Sequence[int], parts: list[bytes]) -> None:
    """Copy runs of unchanged records from the decoded bytes, serialise the others."""
    n = len(records)
    known = min(n, len(originals))
    if n == known == len(originals) and all(map(operator.is_, records, originals)):
        parts.append(source[starts[0] : starts[-1]])
        return
    i = 0
    while i < n:
        j = i
        while j < known and records[j] is originals[j]:
            j += 1
        if j > i:
            parts.append(source[starts[i] : starts[j]])
            i = j
            continue
        while j < n and not (j < known and records[j] is originals[j]):
            j += 1
        _encode_records(records[i:j], parts)
        i = j


def _py_encode_records(records: Sequence[Record], parts: list[bytes]) -> None:
    """Append the records section's pieces to `parts`; small varints come from a table.

    Deltas and lengths in 0..8191 (the zigzag of a non-negative n is 2n) are looked up
    directly; anything else, negative deltas included, takes `_zigzag_bytes`.
    """
    table = _ZZ_TABLE
    attr_bytes = _ATTR_BYTES
    slow = _zigzag_bytes
    append = parts.append
    join = b"".join
    for attr, ts_delta, offset_delta, key, value, headers in records:
        ts = table[ts_delta << 1] if 0 <= ts_delta < 8192 else slow(ts_delta)
        od = table[offset_delta << 1] if 0 <= offset_delta < 8192 else slow(offset_delta)
        if key is None:
            klen = b"\x01"
            key = b""
        else:
            n = len(key)
            klen = table[n << 1] if n < 8192 else slow(n)
        if value is None:
            vlen = b"\x01"
            value = b""
        else:
            n = len(value)
            vlen = table[n << 1] if n < 8192 else slow(n)
        body = join((attr_bytes[attr], ts, od, klen, key, vlen, value,
                     _encode_headers(headers) if headers else b"\x00"))
        n = len(body)
        append(table[n << 1] if n < 8192 else slow(n))
        append(body)


def _encode_headers(headers: Sequence[Header]) -> bytes:
    """A record's header array: count, then each key (UTF-8) and value (null allowed)."""
    parts = [_zigzag_bytes(len(headers))]
    for hkey, hvalue in headers:
        raw = hkey.encode("utf-8", "surrogateescape")
        parts.append(_zigzag_bytes(len(raw)))
        parts.append(raw)
        if hvalue is None:
            parts.append(b"\x01")
        else:
            parts.append(_zigzag_bytes(len(hvalue)))
            parts.append(bytes(hvalue))
    return b"".join(parts)


_decode_records: Callable[[bytes, int, int, int, int, list[int]], list[Record]]
_encode_records: Callable[[Sequence[Record], list[bytes]], None]
_layout_records: Callable[[bytes, int, int, int, int], list[int]]


def _select_implementation(accelerated: bool) -> bool:
    """Run the hot loops in C when asked and the extension imports, else in Python.

    Returns (and sets RECORDS_ACCELERATED to) whether C is now in use; tests call it to run
    the same checks through both implementations.
    """
    global _decode_records, _encode_records, _layout_records, RECORDS_ACCELERATED
    _decode_records, _encode_records, _layout_records = (
        _py_decode_records, _py_encode_records, _py_layout_records)
    RECORDS_ACCELERATED = False
    if accelerated:
        try:
            from streamctl.kafka import _records_c
        except ImportError:
            return False
        _records_c.init(Record, RecordsError)
        _decode_records, _encode_records, _layout_records = (
            _records_c.decode_records, _records_c.encode_records, _records_c.record_layout)
        RECORDS_ACCELERATED = True
    return RECORDS_ACCELERATED


#: True when the C extension runs the record loops; STREAMCTL_PURE_PYTHON=1 turns it off.
RECORDS_ACCELERATED: bool = _select_implementation(
    os.environ.get("STREAMCTL_PURE_PYTHON", "") in ("", "0")
)
