"""The C digests (OpenSSL SHA-256 without the GIL) equal the hashlib reference, always."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamctl.kafka import _records_c, records
from streamctl.kafka.records import Compression, RecordsError, decode_sections
from streamctl.transcript import digests
from streamctl.transcript.events import record_digest
from streamctl.transcript.recorder import TranscriptRecorder

from .helpers import batch_bytes

PURE_PYTHON = os.environ.get("STREAMCTL_PURE_PYTHON", "") not in ("", "0")

field = st.one_of(st.none(), st.binary(max_size=300))
records_st = st.lists(st.tuples(field, field), min_size=1, max_size=40)


@pytest.fixture
def both() -> Iterator[None]:
    """Leave the module as it was found, whichever implementation a test switched to."""
    before = digests.DIGESTS_ACCELERATED
    yield
    digests._select_implementation(before)


def _reference(records: bytes) -> list[str]:
    sections, _tail = decode_sections(records, verify_crc=False)
    return digests._py_record_digests(sections)


def test_the_active_implementation_is_the_c_one() -> None:
    if PURE_PYTHON:
        assert not digests.DIGESTS_ACCELERATED
    else:  # CI must run the C digests, not fall back to hashlib without anyone noticing
        assert digests.DIGESTS_ACCELERATED
        assert digests._c_digests is _records_c.record_digests


@pytest.mark.usefixtures("both")
def test_select_implementation_switches_and_reports() -> None:
    assert digests._select_implementation(False) is False
    assert digests._c_digests is None
    assert digests._select_implementation(True) is True
    assert digests.DIGESTS_ACCELERATED


@pytest.mark.usefixtures("both")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(values=records_st, codec=st.sampled_from(list(Compression)), batches=st.integers(1, 3))
def test_c_digests_equal_hashlib_digests(
    values: list[tuple[bytes | None, bytes | None]], codec: Compression, batches: int
) -> None:
    data = b"".join(batch_bytes(values, base_offset=i * len(values), codec=codec)
                    for i in range(batches))
    expected = [record_digest(k, v) for k, v in values] * batches
    assert digests._select_implementation(True)
    assert digests.record_digests(data) == expected
    assert _reference(data) == expected


def _c(section_bytes: bytes, count: int) -> list[str]:
    return _records_c.record_digests(section_bytes, 0, len(section_bytes), count, 0)


def test_corrupt_sections_fail_as_the_record_walk_does() -> None:
    if not digests.DIGESTS_ACCELERATED:
        pytest.skip("the C digests did not bind in this environment (STREAMCTL_PURE_PYTHON)")
    data = batch_bytes([(b"k", b"v" * 10)] * 3)
    (section,), _ = decode_sections(data, verify_crc=False)
    body = bytes(section.data[section.start : section.end])
    assert len(_c(body, 3)) == 3
    for broken in (body[:-1], body + b"\x00", b"\x02" + body[1:], body[:5], b"\xff" * 9):
        with pytest.raises(RecordsError) as walked:
            records._py_layout_records(broken, 0, len(broken), 3, 0)
        with pytest.raises(RecordsError) as hashed:
            _c(broken, 3)
        assert str(hashed.value) == str(walked.value)
    with pytest.raises(ValueError, match="outside a buffer"):
        _records_c.record_digests(body, 0, len(body) + 1, 3, 0)
    assert _c(b"", 0) == []


def test_bind_refuses_an_object_that_is_not_loaded(tmp_path: Path) -> None:
    assert _records_c.bind_sha256(str(tmp_path / "not-a-library.so")) is False


def test_real_sections_of_every_codec_digest_identically() -> None:
    if not digests.DIGESTS_ACCELERATED:
        pytest.skip("the C digests did not bind in this environment (STREAMCTL_PURE_PYTHON)")
    values = [(b"k%d" % i, os.urandom(i % 500)) for i in range(2000)]
    for codec in Compression:
        data = batch_bytes(values, codec=codec)
        assert digests.record_digests(data) == _reference(data)
        assert digests.record_digests(data) == [record_digest(k, v) for k, v in values]


def test_the_recorder_needs_no_child_when_hashing_runs_in_c(tmp_path: Path) -> None:
    rec = TranscriptRecorder(tmp_path, subject="alice", grant_id="g-1")
    try:
        assert (rec._digest_process is None) == digests.DIGESTS_ACCELERATED
    finally:
        rec.seal("closed")
