"""The C record codec against the pure-Python reference: same results, same errors, no crash.

Both implementations are called directly (not through the selection in records.py), so
these tests compare them whichever one is active.
"""

from __future__ import annotations

import gc
import random
import sys
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamctl.kafka import _records_c, records
from streamctl.kafka.records import Record, RecordsError
from streamctl.transcript import digests
from tests.kafka.conftest import PURE_PYTHON

_records_c.init(Record, RecordsError)  # records.py skips this when STREAMCTL_PURE_PYTHON=1

INT64 = st.integers(-(2**63), 2**63 - 1)
blobs = st.binary(max_size=300)
# Lengths of three-byte varints and more, cheaply.
big_blobs = st.integers(8000, 40_000).map(lambda n: random.Random(n).randbytes(n))
header_keys = st.text(max_size=12) | st.binary(max_size=12).map(
    lambda raw: raw.decode("utf-8", "surrogateescape"))
headers_st = st.lists(st.tuples(header_keys, st.none() | blobs), max_size=4).map(tuple)
records_st = st.lists(
    st.builds(
        Record,
        attributes=st.integers(0, 255),
        timestamp_delta=INT64 | st.integers(-200, 20_000),
        offset_delta=st.integers(-(2**31), 2**31 - 1) | st.integers(0, 20_000) | INT64,
        key=st.none() | blobs,
        value=st.none() | blobs | big_blobs,
        headers=headers_st,
    ),
    max_size=20,
)

Outcome = tuple[object, ...]


def _decode_outcome(fn: Callable[..., list[Record]], buf: bytes | bytearray | memoryview,
                    pos: int, size: int, count: int, base: int) -> Outcome:
    starts: list[int] = []
    try:
        got = fn(buf, pos, size, count, base, starts)
    except RecordsError as exc:
        return ("error", type(exc), str(exc))
    assert all(type(r) is Record for r in got)
    shapes = [tuple(type(f) for f in r) for r in got]
    return ("ok", got, shapes, starts)


def _layout_outcome(fn: Callable[..., list[int]], buf: bytes | bytearray | memoryview,
                    pos: int, size: int, count: int, base: int) -> Outcome:
    try:
        return ("ok", fn(buf, pos, size, count, base))
    except RecordsError as exc:
        return ("error", type(exc), str(exc))


def _agree(buf: bytes, pos: int, size: int, count: int, base: int = 0) -> Outcome:
    """Decode and lay out with both implementations; they must give the very same answer."""
    py = _decode_outcome(records._py_decode_records, buf, pos, size, count, base)
    c = _decode_outcome(_records_c.decode_records, buf, pos, size, count, base)
    assert c == py
    py_layout = _layout_outcome(records._py_layout_records, buf, pos, size, count, base)
    c_layout = _layout_outcome(_records_c.record_layout, buf, pos, size, count, base)
    assert c_layout == py_layout
    return py


def _encode_both(recs: Sequence[Record]) -> bytes:
    py_parts: list[bytes] = []
    c_parts: list[bytes] = []
    records._py_encode_records(recs, py_parts)
    _records_c.encode_records(recs, c_parts)
    encoded = b"".join(py_parts)
    assert b"".join(c_parts) == encoded
    return encoded


def _fits(record: Record) -> bool:
    """Whether the offset delta fits the five-byte varint decoding allows (35 bits zigzagged)."""
    return -(2**34) <= record.offset_delta < 2**34


def test_the_active_implementation_is_the_c_extension() -> None:
    assert _records_c.__file__ is not None
    assert _records_c.__file__.endswith((".so", ".pyd"))
    if PURE_PYTHON:
        assert not records.RECORDS_ACCELERATED
        assert records._decode_records is records._py_decode_records
    else:  # a failed build must not fall back silently: the suite runs the C code
        assert records.RECORDS_ACCELERATED
        assert records._decode_records is _records_c.decode_records
        assert records._encode_records is _records_c.encode_records
        assert records._layout_records is _records_c.record_layout


def test_select_implementation_switches_and_reports() -> None:
    before = records.RECORDS_ACCELERATED
    try:
        assert records._select_implementation(False) is False
        assert not records.RECORDS_ACCELERATED
        assert records._encode_records is records._py_encode_records
        assert records._select_implementation(True) is True
        assert records.RECORDS_ACCELERATED
        assert records._layout_records is _records_c.record_layout
    finally:
        records._select_implementation(before)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=records_st, base=INT64, prefix=st.binary(max_size=9), suffix=st.binary(max_size=9))
def test_generated_records_encode_decode_and_lay_out_identically(
    recs: list[Record], base: int, prefix: bytes, suffix: bytes
) -> None:
    section = _encode_both(recs)
    buf = prefix + section + suffix
    start, end = len(prefix), len(prefix) + len(section)
    fits = all(map(_fits, recs))
    outcome = _agree(buf, start, end, len(recs), base)
    assert outcome[0] == ("ok" if fits else "error")
    if fits:
        assert outcome[1] == recs
    assert _agree(buf, start, end, len(recs) - 1, base)[0] == ("error" if recs else "ok")
    assert _agree(buf, start, end, len(recs) + 1, base)[0] == "error"
    with_suffix = _agree(buf, start, len(buf), len(recs), base)
    assert with_suffix[0] == ("ok" if fits and not suffix else "error")


@st.composite
def mutated_sections(draw: st.DrawFn) -> tuple[bytes, int]:
    recs = draw(records_st)[: draw(st.integers(0, 4))]
    data = bytearray(_encode_both(recs))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        at = draw(st.integers(0, len(data)))
        if how == "set" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 6))]
        else:
            del data[at:]
    count = len(recs) + draw(st.sampled_from([0, 0, 0, -1, 1, 2**31 - 1, -5]))
    return bytes(data), count


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated_sections(), base=INT64, data=st.data())
def test_corrupted_sections_fail_the_same_way(case: tuple[bytes, int], base: int,
                                              data: st.DataObject) -> None:
    section, count = case
    size = data.draw(st.integers(0, len(section)))
    pos = data.draw(st.integers(0, size))
    _agree(section, pos, size, count, base)
    _agree(section, 0, len(section), count, base)


@settings(max_examples=300, deadline=None)
@given(buf=st.binary(max_size=120), count=st.integers(-2, 30), base=INT64)
def test_random_bytes_fail_the_same_way(buf: bytes, count: int, base: int) -> None:
    _agree(buf, 0, len(buf), count, base)


def test_fixed_count_fuzz_through_the_c_codec() -> None:
    rng = random.Random(20_261_129)
    seeds = [
        _encode_both([Record(rng.randrange(256), rng.randrange(-5, 9000), i,
                             rng.choice([None, b"", b"k%d" % i]),
                             rng.choice([None, b"", rng.randbytes(rng.randrange(300))]),
                             rng.choice([(), (("h", b"v"), ("\udcff", None))]))
                      for i in range(rng.randrange(1, 6))])
        for _ in range(40)
    ]
    errors = 0
    for i in range(20_000):
        if i % 4 == 0:
            blob = bytearray(rng.randbytes(rng.randrange(0, 80)))
        else:
            blob = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                if blob:
                    blob[rng.randrange(len(blob))] = rng.randrange(256)
            if rng.random() < 0.3:
                del blob[rng.randrange(len(blob) + 1):]
        buf = bytes(blob)
        count = rng.randrange(0, 7)
        if _agree(buf, 0, len(buf), count, i)[0] == "error":
            errors += 1
    assert 1000 < errors < 20_000  # both outcomes were exercised


def _varint(raw: int) -> bytes:
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def _record(body: bytes) -> bytes:
    return _varint(len(body) << 1) + body


@pytest.mark.parametrize(
    ("section", "message"),
    [
        # offset delta as a six-byte varint
        (_record(b"\x00\x00" + b"\xff" * 5 + b"\x01" + b"\x01\x01\x00"), "varint longer than 5"),
        # timestamp delta as an eleven-byte varlong
        (_record(b"\x00" + b"\xff" * 10 + b"\x01\x00\x01\x01\x00"), "varint longer than 10"),
        # a ten-byte varlong whose last byte carries bits beyond 64
        (_record(b"\x00" + b"\xff" * 9 + b"\x02" + b"\x00\x01\x01\x00"), "does not fit in 64"),
        # key length -1 written in two bytes is not the null marker
        (_record(b"\x00\x00\x00\x81\x00\x01\x00"), "key length -1 is impossible"),
        (_record(b"\x00\x00\x00\x01\x03\x00"), "value length -2 is impossible"),
        (_record(b"\x00\x00\x00\x01\x01\x03"), "header count -2 is impossible"),
        (_record(b"\x00\x00\x00\x01\x01\x02\x7f\x00"), "header key length -64 is impossible"),
        (_record(b"\x00\x00\x00\x01\x01\x02\x02a\x05"), "header value length -3 is impossible"),
        (_record(b"\x00\x00\x00\x01\x01\x02\x02a\x08ab"), "header value length 4 is impossible"),
        (_record(b"\x00\x00\x00\x01\x01\x00\x00"), "but its fields take 6 bytes"),
        (b"\x0a\x00\x00\x00\x01\x01\x00", "record length 5 is impossible"),
        (b"\x01", "record length -1 is impossible"),
        (b"\x0e\x00\x00", "record length 7 is impossible"),
        (b"", "records truncated"),
        (b"\xff\xff", "records truncated"),
    ],
)
def test_each_malformed_record_gets_the_reference_message(section: bytes, message: str) -> None:
    outcome = _agree(section, 0, len(section), 1, 7)
    assert outcome[0] == "error"
    assert message in str(outcome[2])


def test_extreme_deltas_and_empty_fields_round_trip() -> None:
    recs = [
        Record(255, -(2**63), -(2**31), b"", b"", ()),
        Record(0, 2**63 - 1, 2**31 - 1, None, None, (("", None), ("\udcff\udc80", b""))),
        Record(7, -1, 0, b"k" * 9000, b"v" * 70_000, (("h" * 9000, b"x" * 9000),)),
    ]
    section = _encode_both(recs)
    assert _agree(section, 0, len(section), len(recs), 2**63 - 1) == (
        "ok", recs, [tuple(type(f) for f in r) for r in recs], [0, *_starts(section, 3)])


def _starts(section: bytes, count: int) -> list[int]:
    layout = records._py_layout_records(section, 0, len(section), count, 0)
    return [*layout[records.LAYOUT_STRIDE :: records.LAYOUT_STRIDE]]


def test_record_offset_in_messages_can_exceed_64_bits() -> None:
    section = _record(b"\x00\x00" + _varint(2**32 - 2) + b"\x01\x01\x00\x00")
    outcome = _agree(section, 0, len(section), 1, 2**63 - 1)
    assert f"record at offset {2**63 - 1 + 2**31 - 1} has length" in str(outcome[2])


def test_any_buffer_decodes_like_bytes() -> None:
    recs = [Record(1, 2, 3, b"key", b"value", (("h", b"v"),)), Record(0, 0, 4, None, b"", ())]
    section = b"xx" + _encode_both(recs)
    expected_starts: list[int] = []
    assert _records_c.decode_records(section, 2, len(section), 2, 0, expected_starts) == recs
    assert expected_starts == [2, *(2 + s for s in _starts(section[2:], 2))]
    layout = records._py_layout_records(section, 2, len(section), 2, 0)
    for buf in (bytearray(section), memoryview(section)):
        starts: list[int] = []
        got = _records_c.decode_records(buf, 2, len(section), 2, 0, starts)
        assert got == recs
        assert [type(r.key) for r in got] == [bytes, type(None)]
        assert type(got[0].value) is bytes and type(got[0].headers[0][1]) is bytes
        assert starts == expected_starts
        assert _records_c.record_layout(buf, 2, len(section), 2, 0) == layout


def test_encoder_takes_any_bytes_like_field_and_any_sequence() -> None:
    plain = [Record(1, 5, 0, b"key", b"value", (("h", b"hv"),))]
    expected = _encode_both(plain)
    for wrap in (bytearray, memoryview):
        parts: list[bytes] = []
        _records_c.encode_records(
            [(1, 5, 0, wrap(b"key"), wrap(b"value"), [("h", wrap(b"hv"))])], parts)  # type: ignore[list-item]
        assert b"".join(parts) == expected
    parts = []
    _records_c.encode_records((), parts)
    assert parts == []


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ((0, 0, 0, None), ValueError),
        ((0, 0, 0, None, None, (), 1), ValueError),
        ((256, 0, 0, None, None, ()), ValueError),
        ((-129, 0, 0, None, None, ()), ValueError),
        ((0, 2**63, 0, None, None, ()), OverflowError),
        ((0, 0, -(2**63) - 1, None, None, ()), OverflowError),
        ((0, 0, 0, "text", None, ()), TypeError),
        ((0, 0, 0, None, 5, ()), TypeError),
        ((0, 1.5, 0, None, None, ()), TypeError),
        ((0, 0, 0, None, None, ((b"bytes key", b"v"),)), TypeError),
        ((0, 0, 0, None, None, (("k", "text value"),)), TypeError),
        ((0, 0, 0, None, None, (("k",),)), TypeError),
        ((0, 0, 0, None, None, 5), TypeError),
        ((0, 0, 0, None, None, (("\ud800", b""),)), UnicodeEncodeError),
        (None, TypeError),
    ],
)
def test_encoder_refuses_what_it_cannot_write(record: object, error: type[Exception]) -> None:
    parts: list[bytes] = []
    with pytest.raises(error):
        _records_c.encode_records([Record(0, 0, 0, None, b"ok"), record], parts)  # type: ignore[list-item]
    assert parts == []


def test_init_refuses_types_it_cannot_build_and_keeps_the_old_ones() -> None:
    class WithDict(tuple):  # type: ignore[type-arg]
        pass

    for args in ((int, RecordsError), (WithDict, RecordsError), (Record, int), (Record, 5)):
        with pytest.raises(TypeError):
            _records_c.init(*args)  # type: ignore[arg-type]
    with pytest.raises(RecordsError):
        _records_c.decode_records(b"\x01", 0, 1, 1, 0, [])
    one = _encode_both([Record(0, 0, 0, None, None)])
    assert type(_records_c.decode_records(one, 0, len(one), 1, 0, [])[0]) is Record


def test_span_outside_the_buffer_is_a_value_error() -> None:
    for pos, size in ((-1, 2), (0, 3), (0, -1)):
        with pytest.raises(ValueError):
            _records_c.decode_records(b"ab", pos, size, 1, 0, [])
        with pytest.raises(ValueError):
            _records_c.record_layout(b"ab", pos, size, 1, 0)


def test_no_reference_leaks_on_success_or_error_paths() -> None:
    recs = [Record(i % 3, i, i, b"k", b"v" * i, (("h", b"x"), ("n", None)) if i % 2 else ())
            for i in range(30)]
    good = _encode_both(recs)
    bad = good[:-3] + b"\x7f\x7f\x7f"

    def work() -> None:
        for data in (good, bad):
            try:
                _records_c.decode_records(data, 0, len(data), 30, 0, [])
            except RecordsError:
                assert data is bad
            try:
                _records_c.record_layout(data, 0, len(data), 30, 0)
            except RecordsError:
                assert data is bad
            if digests.DIGESTS_ACCELERATED:
                try:
                    _records_c.record_digests(data, 0, len(data), 30, 0)
                except RecordsError:
                    assert data is bad
        _records_c.encode_records(recs, [])
        try:
            _records_c.encode_records([*recs, (0, 0, 0, None, None, (("k", 5),))], [])  # type: ignore[list-item]
        except TypeError:
            pass

    for _ in range(50):
        work()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(2000):
        work()
    gc.collect()
    assert sys.getallocatedblocks() - before < 200


def test_decoded_records_hash_like_records_built_in_python() -> None:
    parts: list[bytes] = []
    _records_c.encode_records([Record(0, 1, 2, b"k", b"v", (("h", b"x"),))], parts)
    section = b"".join(parts)
    (decoded,) = _records_c.decode_records(section, 0, len(section), 1, 0, [])
    built = Record(0, 1, 2, b"k", b"v", (("h", b"x"),))
    assert decoded == built
    assert hash(decoded) == hash(built)
    assert len({decoded, built}) == 1


def test_a_huge_header_count_costs_no_memory_before_it_fails() -> None:
    """A record whose length allows millions of headers but whose first header is bad."""
    import tracemalloc

    count = 2_000_000  # bounded only by the record's length (2 bytes per header)
    body = (b"\x00" + b"\x00" + b"\x00" + b"\x01" + b"\x01"  # attrs, deltas, null key/value
            + records._zigzag_bytes(count) + b"\x01" + b"\x00" * (count * 2))
    section = records._zigzag_bytes(len(body)) + body
    tracemalloc.start()
    try:
        with pytest.raises(RecordsError, match="header key length -1"):
            _records_c.decode_records(section, 0, len(section), 1, 0, [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes allocated for a record that was refused"
