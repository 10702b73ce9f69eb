"""Describe a Fetch response while it streams past, reading only its structure.

The tunnel relays Fetch answers without holding them: most of a 1 MB answer is batch bodies
that it splices from the broker socket to the client socket. A recorded session still needs,
per partition, the topic, error code, size of the records field and the batch headers in it.
Decoding the whole frame in Python would copy every byte; this walker asks the I/O shell
only for the structural bytes and the 61-byte batch headers, and lets it splice the rest.

It is a sans-I/O generator. It yields instructions and the shell answers each one:

* `Read(size)`: the shell reads the next `size` bytes of the frame, forwards them to the
  client and sends them into the walker;
* `Pass(size)`: the shell moves the next `size` bytes to the client unseen and sends None.

The generator returns the partitions (`FetchedPartition`) once the sizes it asked for add up
to exactly the frame. Reads carry some bytes more than the walker needs at that point
(`LOOKAHEAD`, growing while no Pass comes), so a one-partition answer costs two or three
Reads; a batch body of at least `PASS_AT_LEAST` bytes still not read goes out as one Pass.

What the records fields hold is described exactly as `records.iter_batch_headers` would: the
same headers, positions included, the same stop at a truncated final batch, and where it
would raise `RecordsError`, that message in `undecodable` (the rest of that field is then
passed on undescribed). Everything around the records fields is checked as strictly as the
codec does: a count or length that does not fit in what is left of the frame, a negative
length where null is not allowed, a frame that ends early or has bytes left over, each raise
`BrokerProtocolError`; no count is trusted before it is checked against the bytes left.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from typing import cast

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.errors import BrokerProtocolError
from streamctl.kafka.headers import response_header_version
from streamctl.kafka.records import BatchHeader, RecordsError, iter_batch_headers
from streamctl.kafka.versions import SUPPORTED_VERSIONS
from streamctl.kafka.wire import WireError, read_tagged_fields

__all__ = [
    "LOOKAHEAD",
    "PASS_AT_LEAST",
    "WALKABLE_VERSIONS",
    "FetchWalk",
    "FetchedPartition",
    "Instruction",
    "Pass",
    "Read",
    "Sent",
    "describe_fetch_response",
    "describe_records",
    "walk_fetch_response",
]

#: Unread runs at least this long are spliced (Pass); shorter ones cost less as one Read.
PASS_AT_LEAST = 16 * 1024
#: Bytes a Read asks for beyond what the walker needs now: the next fields, often a header.
#: Each Read without a Pass since doubles it, up to PASS_AT_LEAST, so an answer made of many
#: small partitions or batches takes few Reads; a Pass sets it back, so little of a big
#: batch body is ever read.
LOOKAHEAD = 256

#: Fetch versions the walker understands: those the tunnel offers, below v16 (NodeEndpoints).
WALKABLE_VERSIONS: tuple[int, int] = (
    SUPPORTED_VERSIONS[ApiKey.FETCH][0],
    min(SUPPORTED_VERSIONS[ApiKey.FETCH][1], 15),
)


@dataclass(frozen=True, slots=True)
class Read:
    """Give me the next `size` bytes of the frame (forward them to the client as well)."""

    size: int


@dataclass(frozen=True, slots=True)
class Pass:
    """The next `size` bytes go to the client without passing through the walker."""

    size: int


@dataclass(frozen=True, slots=True)
class FetchedPartition:
    """What one partition of a Fetch answer held, as a transcript records it."""

    topic: str | None  # the name, up to v12
    topic_id: uuid.UUID | None  # from v13; None for the all-zero id, as the codec decodes it
    partition_index: int
    error_code: int
    records_size: int  # bytes of the records field; 0 when it is null or empty
    batches: tuple[BatchHeader, ...]  # == tuple(iter_batch_headers(records)) when decodable
    undecodable: str | None = None  # the RecordsError message iter_batch_headers would raise
    #: The records field itself, only when the tunnel held the answer whole (to mask it);
    #: None when the walker described it while it streamed past.
    records: bytes | None = None


Instruction = Read | Pass
#: What the shell sends back: the bytes of a Read, None after a Pass.
Sent = bytes | bytearray | memoryview | None
FetchWalk = Generator[Instruction, Sent, list[FetchedPartition]]

# The magic >= 2 batch header, as records.iter_batch_headers reads it.
_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
_BATCH_HEADER_SIZE = _BATCH_HEADER.size  # 61
_BATCH_PREFIX = struct.Struct(">qi")  # base offset, batch length
_BATCH_PREFIX_SIZE = 12
_MAGIC_AT = 16
_SMALLEST_LOOK = _BATCH_PREFIX_SIZE + 5  # less than this left is never a batch
_MIN_BATCH_LENGTH = _BATCH_HEADER_SIZE - _BATCH_PREFIX_SIZE
_MIN_LEGACY_LENGTH = 14  # crc, magic, attributes, key and value lengths
_LEGACY_LOOK = 18  # up to and including a legacy entry's attributes byte

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_INDEX_AND_ERROR = struct.Struct(">ih")
_UUID_SIZE = 16
_ABORTED_SIZE = 16  # producer id, first offset
#: Fixed bytes of the partition's known tagged structs (diverging epoch, leader, snapshot id).
_KNOWN_PARTITION_TAGS = {0: 12, 1: 8, 2: 12}


class _Cursor:
    """The frame as the walker sees it: bytes read but not yet used, and what is still due."""

    __slots__ = ("ahead", "buf", "left", "pos", "version")

    def __init__(self, version: int, size: int) -> None:
        self.version = version
        self.buf = bytearray()
        self.pos = 0  # next unused byte of buf
        self.left = size  # frame bytes not yet asked for
        self.ahead = LOOKAHEAD  # read-ahead of the next Read

    def remaining(self) -> int:
        return len(self.buf) - self.pos + self.left

    def error(self, what: str) -> BrokerProtocolError:
        return BrokerProtocolError(
            f"broker sent a malformed Fetch v{self.version} response: {what}"
        )

    def fill(self, n: int, what: str) -> Generator[Instruction, Sent, None]:
        """Have at least n unused bytes in buf, reading ahead a little when asking anyway."""
        have = len(self.buf) - self.pos
        if have >= n:
            return
        missing = n - have
        if missing > self.left:
            raise self.error(f"{what} needs {n} bytes but the frame has {have + self.left} left")
        size = min(self.left, missing + self.ahead)
        self.ahead = min(self.ahead * 2, PASS_AT_LEAST)
        data = yield Read(size)
        if data is None or len(data) != size:
            got = "nothing" if data is None else f"{len(data)} bytes"
            raise ValueError(f"the walker asked to read {size} bytes and was sent {got}")
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data
        self.left -= size

    def skip(self, n: int, what: str) -> Generator[Instruction, Sent, None]:
        """Move past n bytes nobody needs to see: the buffered ones, then a Pass or a Read."""
        have = len(self.buf) - self.pos
        if n <= have:
            self.pos += n
            return
        rest = n - have
        if rest > self.left:
            raise self.error(f"{what} needs {n} bytes but the frame has {have + self.left} left")
        self.buf.clear()
        self.pos = 0
        if rest < PASS_AT_LEAST:
            yield from self.fill(rest, what)
            self.pos = rest
            return
        sent = yield Pass(rest)
        if sent is not None:
            raise ValueError("the walker passed bytes on and was sent some back")
        self.left -= rest
        self.ahead = LOOKAHEAD

    def fixed(self, n: int, what: str) -> Generator[Instruction, Sent, int]:
        """Make n bytes ready and consume them; return where they start in buf."""
        if len(self.buf) - self.pos < n:
            yield from self.fill(n, what)
        at = self.pos
        self.pos = at + n
        return at

    def uvarint(self, what: str) -> Generator[Instruction, Sent, int]:
        """An unsigned varint of at most 5 bytes (a Kafka uint32)."""
        buf, pos = self.buf, self.pos
        if pos < len(buf) and buf[pos] < 0x80:  # one byte: the common case
            self.pos = pos + 1
            return buf[pos]
        if len(buf) - pos < 5:
            available = self.remaining()
            if available == 0:
                raise self.error(f"the frame ends before {what}")
            yield from self.fill(min(5, available), what)
            buf, pos = self.buf, self.pos
        end = min(len(buf), pos + 5)
        value = 0
        shift = 0
        while pos < end:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > 0xFFFFFFFF:
                    raise self.error(f"{what} overflows 32 bits")
                self.pos = pos
                return value
            shift += 7
        if end - self.pos == 5:
            raise self.error(f"{what} is a varint longer than 5 bytes")
        raise self.error(f"the frame ends inside {what}")

    def length(
        self, compact: bool, wide: bool, what: str
    ) -> Generator[Instruction, Sent, int]:
        """A length or count prefix (int16, int32 or compact varint); negative means null."""
        if compact:
            return (yield from self.uvarint(what)) - 1
        codec = _I32 if wide else _I16
        at = yield from self.fixed(codec.size, what)
        return int(codec.unpack_from(self.buf, at)[0])

    def count(
        self, compact: bool, nullable: bool, smallest: int, what: str
    ) -> Generator[Instruction, Sent, int]:
        """An array count, checked against the bytes left before anyone loops over it."""
        n = yield from self.length(compact, True, f"{what} count")
        if n < 0:
            if nullable:
                return 0
            raise self.error(f"{what} count {n} where the array may not be null")
        left = self.remaining()
        if n * smallest > left:
            raise self.error(
                f"{what} count {n} needs at least {n * smallest} bytes but the frame has "
                f"{left} left"
            )
        return n

    def tagged_fields(self, what: str) -> Generator[Instruction, Sent, None]:
        """Step over a tagged-field section none of whose tags the walker needs."""
        buf, pos = self.buf, self.pos
        if pos < len(buf) and buf[pos] == 0:
            self.pos = pos + 1
            return
        count = yield from self.tag_count(what)
        for _ in range(count):
            tag = yield from self.uvarint(f"{what} tag")
            size = yield from self.tag_size(tag, what)
            yield from self.skip(size, f"{what} tagged field {tag}")

    def tag_count(self, what: str) -> Generator[Instruction, Sent, int]:
        count = yield from self.uvarint(f"{what} tagged field count")
        left = self.remaining()
        if count * 2 > left:  # a tag and a size at least
            raise self.error(f"{what} announces {count} tagged fields but the frame has "
                             f"{left} bytes left")
        return count

    def tag_size(self, tag: int, what: str) -> Generator[Instruction, Sent, int]:
        size = yield from self.uvarint(f"{what} tagged field {tag} size")
        left = self.remaining()
        if size > left:
            raise self.error(f"{what} tagged field {tag} claims {size} bytes but the frame has "
                             f"{left} left")
        return size

    def partition_tags(self) -> Generator[Instruction, Sent, None]:
        """The partition's tagged fields; the three the schema defines must hold their struct."""
        buf, pos = self.buf, self.pos
        if pos < len(buf) and buf[pos] == 0:
            self.pos = pos + 1
            return
        what = "partition"
        count = yield from self.tag_count(what)
        for _ in range(count):
            tag = yield from self.uvarint(f"{what} tag")
            size = yield from self.tag_size(tag, what)
            fixed = _KNOWN_PARTITION_TAGS.get(tag)
            if fixed is None:
                yield from self.skip(size, f"{what} tagged field {tag}")
                continue
            if size <= fixed:
                raise self.error(f"{what} tagged field {tag} holds {size} bytes, too few for "
                                 f"its {fixed + 1}-byte struct")
            at = yield from self.fixed(size, f"{what} tagged field {tag}")
            try:
                end = read_tagged_fields(self.buf, at + fixed, at + size)
            except WireError as exc:
                raise self.error(f"{what} tagged field {tag}: {exc}") from None
            if end != at + size:
                raise self.error(f"{what} tagged field {tag} holds {at + size - end} stray bytes")


def walk_fetch_response(version: int, size: int) -> FetchWalk:
    """Walk a Fetch response body as it streams, asking for as few of its bytes as it can.

    Starts right after the 4-byte correlation id; `size` is what is left of the frame then.
    Raises ValueError at once for a version outside WALKABLE_VERSIONS or a negative size.
    """
    low, high = WALKABLE_VERSIONS
    if not low <= version <= high:
        raise ValueError(f"Fetch v{version} cannot be walked: only v{low} to v{high} can")
    if size < 0:
        raise ValueError(f"a Fetch response cannot have {size} bytes after its correlation id")
    return _walk(version, size)


def _walk(version: int, size: int) -> FetchWalk:
    """The walk itself, field by field as FetchResponse.json lays them out at `version`."""
    cur = _Cursor(version, size)
    flexible = version >= 12
    if response_header_version(ApiKey.FETCH, version) >= 1:
        yield from cur.tagged_fields("response header")
    yield from cur.fixed(10 if version >= 7 else 4, "throttle time, error code and session id")
    # Fewest bytes a topic and a partition can take, to check counts before looping on them.
    topic_smallest = (_UUID_SIZE if version >= 13 else 1 if flexible else 2) + (
        2 if flexible else 4
    )
    # Partition index, error code, high watermark, last stable offset, log start offset.
    fixed_size = 14 + (8 if version >= 4 else 0) + (8 if version >= 5 else 0)
    prefix = 1 if flexible else 4  # a compact or an int32 length/count
    partition_smallest = (fixed_size + (prefix if version >= 4 else 0)
                          + (4 if version >= 11 else 0) + prefix + int(flexible))
    out: list[FetchedPartition] = []
    topics = yield from cur.count(flexible, False, topic_smallest, "responses")
    for _ in range(topics):
        name: str | None = None
        topic_id: uuid.UUID | None = None
        if version >= 13:
            at = yield from cur.fixed(_UUID_SIZE, "topic id")
            topic_id = uuid.UUID(bytes=bytes(cur.buf[at : at + _UUID_SIZE]))
            if topic_id.int == 0:
                topic_id = None
        else:
            name = yield from _topic_name(cur, flexible)
        partitions = yield from cur.count(flexible, False, partition_smallest, "partitions")
        for _ in range(partitions):
            at = yield from cur.fixed(fixed_size, "partition fields")
            index, error_code = _INDEX_AND_ERROR.unpack_from(cur.buf, at)
            if version >= 4:
                aborted = yield from cur.count(
                    flexible, True, _ABORTED_SIZE + int(flexible), "aborted transactions"
                )
                if flexible:
                    for _ in range(aborted):
                        yield from cur.fixed(_ABORTED_SIZE, "aborted transaction")
                        yield from cur.tagged_fields("aborted transaction")
                elif aborted:
                    yield from cur.skip(aborted * _ABORTED_SIZE, "aborted transactions")
            if version >= 11:
                yield from cur.fixed(4, "preferred read replica")
            records_size = yield from cur.length(flexible, True, "records length")
            batches: tuple[BatchHeader, ...] = ()
            undecodable: str | None = None
            if records_size < 0:
                records_size = 0
            else:
                left = cur.remaining()
                if records_size > left:
                    raise cur.error(f"records claim {records_size} bytes but the frame has "
                                    f"{left} left")
                batches, undecodable = yield from _records(cur, records_size)
            if flexible:
                yield from cur.partition_tags()
            out.append(FetchedPartition(name, topic_id, index, error_code, records_size,
                                        batches, undecodable))
        if flexible:
            yield from cur.tagged_fields("topic")
    if flexible:
        yield from cur.tagged_fields("response")
    extra = cur.remaining()
    if extra:
        raise cur.error(f"{extra} bytes left over after the body")
    return out


def _topic_name(cur: _Cursor, flexible: bool) -> Generator[Instruction, Sent, str]:
    n = yield from cur.length(flexible, False, "topic name length")
    if n < 0:
        raise cur.error(f"topic name length {n} where the name may not be null")
    left = cur.remaining()
    if n > left:
        raise cur.error(f"topic name claims {n} bytes but the frame has {left} left")
    at = yield from cur.fixed(n, "topic name")
    try:
        return cur.buf[at : at + n].decode("utf-8")
    except UnicodeDecodeError:
        raise cur.error("topic name is not valid UTF-8") from None


def _records(
    cur: _Cursor, size: int
) -> Generator[Instruction, Sent, tuple[tuple[BatchHeader, ...], str | None]]:
    """Describe one records field of `size` bytes (checked to fit) the way iter_batch_headers does.

    Reads each batch's header and passes (or, when short, reads) its body; stops describing
    at a truncated final batch or at what iter_batch_headers would refuse, and moves past
    the rest of the field undescribed.
    """
    headers: list[BatchHeader] = []
    problem: str | None = None
    pos = 0
    unpack_prefix = _BATCH_PREFIX.unpack_from
    unpack_header = _BATCH_HEADER.unpack_from
    append = headers.append
    while (field_left := size - pos) >= _SMALLEST_LOOK:
        buf, at = cur.buf, cur.pos
        if len(buf) - at < _BATCH_HEADER_SIZE and len(buf) - at < field_left:
            yield from cur.fill(min(_BATCH_HEADER_SIZE, field_left), "record batch header")
            buf, at = cur.buf, cur.pos
        base_offset, length = unpack_prefix(buf, at)
        if length < 0:
            problem = f"record batch length {length} is impossible"
            break
        batch_size = _BATCH_PREFIX_SIZE + length
        if batch_size > field_left:
            break  # truncated final batch
        magic = buf[at + _MAGIC_AT]
        if magic >= 2:
            if length < _MIN_BATCH_LENGTH:
                problem = f"record batch length {length} is impossible"
                break
            (_, _, _, _, _, attributes, last_delta, _, _, producer_id, _, _, count) = (
                unpack_header(buf, at)
            )
            append(BatchHeader(pos, batch_size, base_offset, magic, attributes & 0xFFFF,
                                       last_delta, count, producer_id))
            seen = _BATCH_HEADER_SIZE
        else:
            if length < _MIN_LEGACY_LENGTH:
                problem = f"legacy message length {length} is impossible"
                break
            # At least 26 bytes long and complete, so `look` covered its attributes byte.
            append(BatchHeader(pos, batch_size, base_offset, magic, buf[at + 17], 0, -1))
            seen = _LEGACY_LOOK
        body = batch_size - seen
        if len(buf) - at - seen >= body:  # already read ahead: the common case for small batches
            cur.pos = at + batch_size
        else:
            cur.pos = at + seen
            yield from cur.skip(body, "record batch")
        pos += batch_size
    yield from cur.skip(size - pos, "records")
    return tuple(headers), problem


def describe_records(
    topic: str | None,
    topic_id: uuid.UUID | None,
    partition_index: int,
    error_code: int,
    records: bytes,
) -> FetchedPartition:
    """A partition of an answer held in memory, described as the walker describes one.

    Keeps `records` (the tunnel held them anyway, e.g. to mask them).
    """
    headers: list[BatchHeader] = []
    problem: str | None = None
    try:
        for header in iter_batch_headers(records):
            headers.append(header)
    except RecordsError as exc:
        problem = str(exc)
    return FetchedPartition(topic, topic_id, partition_index, error_code, len(records),
                            tuple(headers), problem, records)


def describe_fetch_response(
    version: int, payload: bytes | bytearray | memoryview
) -> list[FetchedPartition]:
    """Run the walker over a Fetch response already in memory (after its correlation id)."""
    view = memoryview(payload)
    walk = walk_fetch_response(version, len(view))
    pos = 0
    try:
        step = next(walk)
        while True:
            end = pos + step.size
            if isinstance(step, Read):
                step = walk.send(view[pos:end])
            else:
                step = walk.send(None)
            pos = end
    except StopIteration as done:
        return cast(list[FetchedPartition], done.value)
