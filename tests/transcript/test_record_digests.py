"""`record_digests` (read off the record layout) equals `record_digest` of each decoded record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamctl.kafka.compression import Compression
from streamctl.kafka.errors import KafkaProtocolError
from streamctl.kafka.records import Record, RecordBatch, decode_batches, encode_batch
from streamctl.transcript.events import record_digest
from streamctl.transcript.recorder import describe_produced, record_digests

optional_bytes = st.one_of(st.none(), st.binary(max_size=300))
records = st.lists(
    st.tuples(optional_bytes, optional_bytes,
              st.lists(st.tuples(st.text(max_size=4), optional_bytes), max_size=2)),
    min_size=1, max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(batches=st.lists(st.tuples(records, st.sampled_from(list(Compression))),
                        min_size=1, max_size=3))
def test_digests_match_decoded_records(
    batches: list[tuple[list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
                        Compression]],
) -> None:
    data = b""
    offset = 0
    for rows, codec in batches:
        recs = [Record(0, i, i, k, v, tuple(h)) for i, (k, v, h) in enumerate(rows)]
        data += bytes(encode_batch(RecordBatch(offset, 0, codec, len(recs) - 1, 1, 1,
                                               -1, -1, -1, recs)))
        offset += len(recs)
    decoded, _ = decode_batches(data)
    expected = [record_digest(r.key, r.value) for b in decoded for r in b.records]
    assert record_digests(data) == expected
    # a truncated final batch is left out, as decoding leaves it out
    assert record_digests(data + data[:30]) == expected


def test_corrupt_records_are_reported_not_digested() -> None:
    data = bytearray(encode_batch(RecordBatch(0, 0, 0, 0, 1, 1, -1, -1, -1,
                                              [Record(0, 0, 0, b"k", b"value")])))
    data[61] = 0x7F  # record length far beyond the batch
    with pytest.raises(KafkaProtocolError):
        record_digests(bytes(data))
    described = describe_produced(bytes(data), 0, 0)
    assert described["record_count"] is None
    assert described["digests"] == []
