"""Small builders shared by the transcript tests: record batches and summary/verdict values."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from streamctl.kafka.fetch_stream import FetchedPartition, describe_records
from streamctl.kafka.records import Compression, Record, RecordBatch, encode_batch


def batch_bytes(
    values: list[tuple[bytes | None, bytes | None]],
    *,
    base_offset: int = 0,
    codec: Compression = Compression.NONE,
    control: bool = False,
) -> bytes:
    """One magic-2 batch holding the given (key, value) records."""
    records = [Record(0, i, i, k, v) for i, (k, v) in enumerate(values)]
    batch = RecordBatch(
        base_offset=base_offset,
        partition_leader_epoch=0,
        attributes=int(codec) | (0x20 if control else 0),
        last_offset_delta=len(records) - 1,
        first_timestamp=1_700_000_000_000,
        max_timestamp=1_700_000_000_000 + len(records),
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        records=records,
    )
    return encode_batch(batch)


@dataclass(frozen=True)
class Summary:
    api_key: int = 0
    api_version: int = 9
    correlation_id: int = 1
    client_id: str | None = "test-client"
    kind: str = "write"
    topics: tuple[str, ...] = ("orders",)
    topic_ids: tuple[uuid.UUID, ...] = ()
    group: str | None = None
    transactional_id: str | None = None
    partitions: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    allowed: bool = True
    error_code: int = 0
    reason: str = "granted"


def fetched_partition(
    records: bytes, partition: int = 0, error_code: int = 0
) -> FetchedPartition:
    """A fetched partition as the tunnel describes it to an observer."""
    return describe_records(None, None, partition, error_code, records)
