"""The streaming Fetch walker against the codec: same partitions, every byte accounted for.

Responses are built with the project's own message codec and real record batches; the
walker must describe them exactly as decode_response + iter_batch_headers do, ask for
sizes that add up to the frame, splice big batch bodies, and refuse broken structure with
BrokerProtocolError only.
"""

from __future__ import annotations

import dataclasses
import random
import struct
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.compression import Compression
from streamctl.kafka.errors import BrokerProtocolError
from streamctl.kafka.fetch_stream import (
    LOOKAHEAD,
    PASS_AT_LEAST,
    WALKABLE_VERSIONS,
    FetchedPartition,
    Pass,
    Read,
    describe_fetch_response,
    describe_records,
    walk_fetch_response,
)
from streamctl.kafka.headers import response_body_offset, response_header_version
from streamctl.kafka.messages import decode_response, encode_response
from streamctl.kafka.records import (
    BatchHeader,
    Record,
    RecordBatch,
    RecordsError,
    encode_batch,
    iter_batch_headers,
)
from streamctl.kafka.wire import write_uvarint
from tests.kafka.builders import message
from tests.kafka.schema_strategies import message_strategy

VERSIONS = list(range(WALKABLE_VERSIONS[0], WALKABLE_VERSIONS[1] + 1))


# --------------------------------------------------------------------------- helpers


def _walk(version: int, payload: bytes) -> tuple[list[FetchedPartition], list[Read | Pass]]:
    """Drive the walker like the shell does, checking its instructions as they come."""
    walk = walk_fetch_response(version, len(payload))
    steps: list[Read | Pass] = []
    pos = 0
    try:
        step = next(walk)
        while True:
            assert step.size > 0, "an empty instruction"
            assert pos + step.size <= len(payload), "asked beyond the frame"
            assert len(steps) <= len(payload), "more instructions than bytes: a loop"
            steps.append(step)
            chunk = payload[pos : pos + step.size]
            pos += step.size
            step = walk.send(chunk if isinstance(step, Read) else None)
    except StopIteration as done:
        assert pos == len(payload), "the walker finished before the frame did"
        return done.value, steps


def _expected(version: int, payload: bytes) -> list[FetchedPartition]:
    """What the codec and iter_batch_headers say about the same bytes."""
    frame = b"\x00\x00\x00\x07" + payload
    offset = response_body_offset(frame, response_header_version(ApiKey.FETCH, version))
    body = decode_response(ApiKey.FETCH, version, frame, offset, exact=True)
    out: list[FetchedPartition] = []
    for topic in body.responses:
        for part in topic.partitions:
            records = b"" if part.records is None else bytes(part.records)
            headers: list[BatchHeader] = []
            problem = None
            try:
                for header in iter_batch_headers(records):
                    headers.append(header)
            except RecordsError as exc:
                problem = str(exc)
            out.append(FetchedPartition(
                getattr(topic, "topic", None) if version <= 12 else None,
                getattr(topic, "topic_id", None) if version >= 13 else None,
                part.partition_index, part.error_code, len(records), tuple(headers), problem,
            ))
    return out


def _payload(version: int, body: Any, header_tags: bytes = b"\x00") -> bytes:
    """A Fetch response frame after its correlation id: header tags (v12+), then the body."""
    raw = encode_response(ApiKey.FETCH, version, body)
    return (header_tags if version >= 12 else b"") + raw


def _batch(base: int, n: int, codec: int = 0, flags: int = 0, size: int = 8) -> bytes:
    records = [Record(0, i, i, b"k%d" % i, random.Random(base + i).randbytes(size))
               for i in range(n)]
    return bytes(encode_batch(RecordBatch(base, 0, flags | codec, max(n - 1, 0), 1_700_000_000_000,
                                          1_700_000_000_000, 7 if flags else -1, 0, -1, records)))


def _legacy(magic: int, base: int) -> bytes:
    builder = LegacyRecordBatchBuilder(magic, 0, 1 << 20)
    builder.append(base, 1_700_000_000_000 if magic else None, b"k", b"legacy value")
    return bytes(builder.build())


# --------------------------------------------------------------------------- strategies

entries = st.one_of(
    st.builds(_batch, st.integers(0, 2**40), st.integers(0, 4),
              st.sampled_from([int(c) for c in Compression]), st.sampled_from([0, 0x10])),
    st.builds(lambda base: _batch(base, 1, flags=0x30), st.integers(0, 2**40)),  # control
    st.builds(_legacy, st.sampled_from([0, 1]), st.integers(0, 2**40)),
    st.builds(lambda base: _batch(base, 2, size=PASS_AT_LEAST), st.integers(0, 99)),  # spliced
)


@st.composite
def records_fields(draw: st.DrawFn) -> bytes | None:
    """Null, empty, garbage, or real batches with a truncated tail or a corrupt length."""
    kind = draw(st.sampled_from(["null", "empty", "garbage", "batches", "batches", "batches"]))
    if kind == "null":
        return None
    if kind == "empty":
        return b""
    if kind == "garbage":
        return draw(st.binary(max_size=90))
    parts = draw(st.lists(entries, min_size=1, max_size=4))
    data = bytearray(b"".join(parts))
    ending = draw(st.sampled_from(["whole", "truncated", "bad length", "garbage"]))
    if ending == "truncated":
        extra = draw(entries)
        data += extra[: draw(st.integers(1, len(extra) - 1))]
    elif ending == "bad length":
        at = sum(len(p) for p in parts[: draw(st.integers(0, len(parts) - 1))])
        struct.pack_into(">i", data, at + 8, draw(st.integers(-(2**31), 60)))
    elif ending == "garbage":
        data += draw(st.binary(min_size=1, max_size=70))
    return bytes(data)


unknown_tags = st.none() | st.dictionaries(
    st.integers(3, 40).map(lambda t: f"_{t}"), st.binary(max_size=6), min_size=1, max_size=2
)


@st.composite
def fetch_payloads(draw: st.DrawFn) -> tuple[int, bytes]:
    """A Fetch response of a walkable version, with real records and tags where allowed."""
    version = draw(st.sampled_from(VERSIONS))
    body = draw(message_strategy(ApiKey.FETCH, False, version))
    flexible = version >= 12
    if flexible:
        body.unknown_tags = draw(unknown_tags)
    for topic in body.responses:
        if version <= 12 and topic.topic is None:
            topic.topic = draw(st.text(max_size=8))
        if flexible:
            topic.unknown_tags = draw(unknown_tags)
        for part in topic.partitions:
            part.records = draw(records_fields())
            if flexible:
                part.unknown_tags = draw(unknown_tags)
                for aborted in part.aborted_transactions or ():
                    aborted.unknown_tags = draw(unknown_tags)
    header_tags = b"\x00"
    if flexible and draw(st.booleans()):
        header_tags = b"\x01\x05\x03abc"  # one unknown tag (5) of three bytes
    return version, _payload(version, body, header_tags)


# --------------------------------------------------------------------------- agreement


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(fetch_payloads())
def test_walker_agrees_with_the_codec(case: tuple[int, bytes]) -> None:
    version, payload = case
    partitions, steps = _walk(version, payload)
    assert sum(s.size for s in steps) == len(payload)
    assert partitions == _expected(version, payload)
    assert describe_fetch_response(version, payload) == partitions
    for s in steps:
        if isinstance(s, Pass):
            assert s.size >= PASS_AT_LEAST


@pytest.mark.parametrize("version", VERSIONS)
def test_every_version_is_covered(version: int) -> None:
    """A two-topic answer with every kind of records field, at each walkable version."""
    fields = [None, b"", _batch(5, 3) + _batch(8, 2, codec=1), _batch(0, 1, flags=0x30),
              _legacy(1, 4) + _legacy(0, 5), b"\x00" * 20, _batch(1, 2) + _batch(3, 3)[:40]]
    topics = []
    for t in range(2):
        partitions = [
            {"partition_index": i, "error_code": i % 3, "high_watermark": 99,
             "aborted_transactions": [{"producer_id": 7, "first_offset": 3}] if i % 2 else None,
             "records": records}
            for i, records in enumerate(fields)
        ]
        key = "topic" if version <= 12 else "topic_id"
        topics.append({key: f"t{t}" if version <= 12 else uuid.UUID(int=t + 1),
                       "partitions": partitions})
    body = message(ApiKey.FETCH, version, request=False, responses=topics)
    payload = _payload(version, body)
    partitions, steps = _walk(version, payload)
    assert partitions == _expected(version, payload)
    assert len(partitions) == 14
    assert partitions[2].batches[1].position == len(_batch(5, 3))
    assert partitions[3].batches[0].is_control
    assert [b.magic for b in partitions[4].batches] == [1, 0]
    assert partitions[5].undecodable == "legacy message length 0 is impossible"
    assert len(partitions[6].batches) == 1 and partitions[6].undecodable is None
    assert not any(isinstance(s, Pass) for s in steps)  # nothing here is worth a splice


def test_one_megabyte_batch_is_one_pass_and_a_few_reads() -> None:
    big = _batch(1000, 64, size=16_384)
    assert len(big) > 1_000_000
    for version in VERSIONS:
        key = "topic" if version <= 12 else "topic_id"
        body = message(ApiKey.FETCH, version, request=False, responses=[
            {key: "orders" if version <= 12 else uuid.uuid4(), "partitions": [
                {"partition_index": 3, "error_code": 0, "high_watermark": 2000,
                 "aborted_transactions": None, "records": big}]}])
        payload = _payload(version, body)
        partitions, steps = _walk(version, payload)
        reads = [s for s in steps if isinstance(s, Read)]
        passes = [s for s in steps if isinstance(s, Pass)]
        assert len(reads) <= 12
        assert len(passes) == 1 and passes[0].size >= len(big) - 61 - LOOKAHEAD
        assert sum(s.size for s in reads) <= 2 * LOOKAHEAD
        (part,) = partitions
        assert part.records_size == len(big) and len(part.batches) == 1
        assert part.batches == tuple(iter_batch_headers(big))
        assert part.batches[0].record_count == 64


def test_small_bodies_are_read_and_big_ones_passed() -> None:
    small = _batch(0, 1, size=PASS_AT_LEAST // 4)
    large = _batch(1, 2, size=PASS_AT_LEAST)
    body = message(ApiKey.FETCH, 15, request=False, responses=[
        {"topic_id": uuid.uuid4(), "partitions": [
            {"partition_index": 0, "error_code": 0, "high_watermark": 0,
             "aborted_transactions": None, "records": small + large + small}]}])
    payload = _payload(15, body)
    _, steps = _walk(15, payload)
    passes = [s.size for s in steps if isinstance(s, Pass)]
    # Read-ahead may take a little (less than a splice's worth) of the large body.
    assert len(passes) == 1 and len(large) - 61 - PASS_AT_LEAST < passes[0] <= len(large) - 61


def test_many_small_parts_take_few_reads() -> None:
    """Read-ahead grows while no Pass comes: 1000 empty partitions or 500 small batches."""
    empty = [{"partition_index": i, "error_code": 0, "high_watermark": 0,
              "aborted_transactions": None, "records": None} for i in range(1000)]
    small = b"".join(_batch(i, 2, size=200) for i in range(500))
    for partitions in (empty, [dict(empty[0], records=small)]):
        body = message(ApiKey.FETCH, 15, request=False,
                       responses=[{"topic_id": uuid.uuid4(), "partitions": partitions}])
        payload = _payload(15, body)
        described, steps = _walk(15, payload)
        assert described == _expected(15, payload)
        assert len(steps) <= len(payload) // PASS_AT_LEAST + 8


def test_versions_outside_the_walkable_range_are_refused() -> None:
    assert WALKABLE_VERSIONS == (4, 15)
    for version in (3, 16, 18, -1):
        with pytest.raises(ValueError, match=f"Fetch v{version} cannot be walked"):
            walk_fetch_response(version, 100)


def test_the_shell_must_send_what_was_asked() -> None:
    walk = walk_fetch_response(12, 10)
    step = next(walk)
    assert isinstance(step, Read)
    with pytest.raises(ValueError, match="was sent"):
        walk.send(b"\x00")  # short of step.size (10)


# --------------------------------------------------------------------------- malformed


def _small(version: int) -> bytes:
    key = "topic" if version <= 12 else "topic_id"
    body = message(ApiKey.FETCH, version, request=False, responses=[
        {key: "ab" if version <= 12 else uuid.UUID(int=9), "partitions": [
            {"partition_index": 1, "error_code": 0, "high_watermark": 5,
             "aborted_transactions": [{"producer_id": 1, "first_offset": 2}],
             "records": _batch(0, 2)}]}])
    return _payload(version, body)


@pytest.mark.parametrize("version", VERSIONS)
def test_truncation_anywhere_is_a_broker_error(version: int) -> None:
    payload = _small(version)
    for cut in range(len(payload)):
        with pytest.raises(BrokerProtocolError, match=f"malformed Fetch v{version}"):
            _walk(version, payload[:cut])


@pytest.mark.parametrize("version", VERSIONS)
def test_leftover_bytes_are_a_broker_error(version: int) -> None:
    with pytest.raises(BrokerProtocolError, match="1 bytes left over"):
        _walk(version, _small(version) + b"\x00")


@pytest.mark.parametrize("version", [4, 11, 12, 15])
def test_huge_counts_fail_fast(version: int) -> None:
    flexible = version >= 12
    head = (b"\x00" if flexible else b"") + bytes(4 if version < 7 else 10)
    huge = [2**31 - 1, 2**32 - 1] if flexible else [2**31 - 1]
    for count in huge:
        prefix = write_uvarint(count) if flexible else struct.pack(">i", count)
        started = time.process_time()
        with pytest.raises(BrokerProtocolError, match="responses count"):
            _walk(version, head + prefix + bytes(64))
        assert time.process_time() - started < 0.5
    with pytest.raises(BrokerProtocolError, match="may not be null"):
        _walk(version, head + (b"\x00" if flexible else struct.pack(">i", -1)) + bytes(8))
    if version >= 13:  # one topic, then a partition count far beyond the frame
        for count in (2**31, 2**32 - 1):
            with pytest.raises(BrokerProtocolError, match="partitions count"):
                _walk(version, head + b"\x02" + bytes(16) + write_uvarint(count) + bytes(40))


def test_bad_varints_and_nulls_name_what_was_wrong() -> None:
    head = b"\x00" + bytes(10)
    cases = {
        b"\xff\xff\xff\xff\xff\x01": "longer than 5 bytes",
        b"\xff\xff\xff\xff\x7f": "overflows 32 bits",
        b"\x02\x00\x01\x00\x00": "topic name length -1",  # one topic, its name null (v12)
        b"\x02\x03\xff\xfe\x01\x00\x00": "not valid UTF-8",
    }
    for tail, what in cases.items():
        with pytest.raises(BrokerProtocolError, match=what):
            _walk(12, head + tail)


def test_known_partition_tags_must_hold_their_struct() -> None:
    body = message(ApiKey.FETCH, 12, request=False, responses=[
        {"topic": "t", "partitions": [
            {"partition_index": 0, "error_code": 0, "high_watermark": 0,
             "aborted_transactions": None, "records": None,
             "diverging_epoch": {"epoch": 1, "end_offset": 2}}]}])
    payload = bytearray(_payload(12, body))
    assert describe_fetch_response(12, payload)[0].records_size == 0
    # The partition ends with its tags: count 1, tag 0, size 13, epoch, end offset, no tags.
    tagged = b"\x01\x00\x0d" + struct.pack(">iq", 1, 2) + b"\x00"
    assert payload[-2 - len(tagged) : -2] == tagged  # then the topic's and the body's tags
    broken = payload.replace(tagged, tagged[:-1] + b"\x07")  # 7 tags announced in no room
    with pytest.raises(BrokerProtocolError, match="tagged field 0"):
        describe_fetch_response(12, broken)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(fetch_payloads(), st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)),
                                  min_size=1, max_size=4))
def test_corrupted_frames_only_ever_raise_broker_errors(
    case: tuple[int, bytes], changes: list[tuple[int, int]]
) -> None:
    version, payload = case
    data = bytearray(payload)
    for where, value in changes:
        data[where % len(data)] = value
    try:
        partitions, steps = _walk(version, bytes(data))
    except BrokerProtocolError:
        return
    assert sum(s.size for s in steps) == len(data)
    # What the walker accepts, the codec reads the same way (the reverse does not hold: the
    # codec takes a null topic name or a negative array count as None).
    assert partitions == _expected(version, bytes(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=records_fields(), error_code=st.integers(-1, 100))
def test_records_held_in_memory_are_described_as_the_walker_describes_them(
    records: bytes | None, error_code: int
) -> None:
    """The masking path describes records it holds; a relay describes them streaming: same."""
    data = records or b""
    body = message(ApiKey.FETCH, 4, False, responses=[{"topic": "t", "partitions": [
        {"partition_index": 3, "error_code": error_code, "records": data}]}])
    (walked,) = describe_fetch_response(4, _payload(4, body))
    held = describe_records("t", None, 3, error_code, data)
    assert held.records == data and walked.records is None
    assert dataclasses.replace(held, records=None) == walked
