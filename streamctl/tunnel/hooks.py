"""The plug points where masking and transcripts join the tunnel's pipeline.

The engine calls a `RecordMasker` on the Fetch path (only for topics that need it) and a
`SessionObserver` at fixed steps of every connection. Both are protocols: the masking and
transcript packages implement them without the engine knowing either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from streamctl.kafka import error_codes
from streamctl.kafka.fetch_stream import FetchedPartition
from streamctl.kafka.summary import RequestSummary
from streamctl.policy.decision import Verdict


@dataclass(frozen=True, slots=True)
class MaskOutcome:
    """Masked record-batch bytes of one partition, and how many fields each rule masked."""

    records: bytes
    counts: Mapping[str, int] = field(default_factory=dict)


class RecordMasker(Protocol):
    """Masks the records of one fetched partition; raises (MaskingError) to fail closed.

    A masker may also have a `close()` method: the tunnel calls it when it stops, so that
    what the masker runs beside it (GrantMasker's worker process) stops with it.
    """

    def needs_masking(self, topic: str) -> bool: ...

    def mask(self, topic: str, partition: int, records: bytes) -> MaskOutcome: ...


class SessionObserver(Protocol):
    """Sees what a session did, step by step: requests, produced and fetched data, closes."""

    def on_request(self, conn_id: str, summary: RequestSummary, verdict: Verdict) -> None: ...

    def on_produced(
        self,
        conn_id: str,
        topic: str,
        partition: int,
        records: bytes,
        base_offset: int,
        error_code: int,
    ) -> None: ...

    def on_fetched(
        self, conn_id: str, topic: str, fetched: FetchedPartition, mask_counts: Mapping[str, int]
    ) -> None:
        """One partition of a Fetch answer, as the client got it: described from its batch
        headers (`fetched.records` holds the bytes only where the tunnel held the answer
        whole to mask it; a relayed answer is described while it streams past)."""

    def on_close(self, conn_id: str, reason: str) -> None: ...


#: The error a fetched partition carries when masking failed (it never gets the raw records).
#: POLICY_VIOLATION: clients report it as an error instead of retrying the same batch forever.
MASKING_FAILED_ERROR: Final = error_codes.POLICY_VIOLATION
