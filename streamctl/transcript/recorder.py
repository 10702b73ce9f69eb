"""`TranscriptRecorder`: the tunnel's SessionObserver that writes the session's transcript.

Called on the tunnel's hot path, so it stays cheap: each callback only queues its
arguments for a worker thread. Produced records are decoded only to digest their raw key
and value bytes (no masking, no re-encoding, no CRC check), in C without the GIL or, where
that cannot run, by a `DigestProcess` child, so that hashing does not hold the GIL the
tunnel's thread needs; fetched data is described from batch headers alone, without
decompressing (the tunnel hands over only that description).
Nothing from a record's content is stored, only digests, offsets, counts and sizes.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from streamctl.kafka.errors import KafkaProtocolError
from streamctl.kafka.fetch_stream import FetchedPartition
from streamctl.transcript import digests as digest_module
from streamctl.transcript.chain import HashChain
from streamctl.transcript.digest_process import DigestProcess
from streamctl.transcript.digests import record_digests
from streamctl.transcript.events import Event, EventType
from streamctl.transcript.spool import (
    DEFAULT_FLUSH_INTERVAL,
    PeriodicSync,
    SpoolWriter,
)


class SummaryLike(Protocol):
    """The parts of a request summary a transcript keeps (RequestSummary satisfies it)."""

    @property
    def api_key(self) -> int: ...
    @property
    def api_version(self) -> int: ...
    @property
    def correlation_id(self) -> int: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def topics(self) -> Sequence[str]: ...
    @property
    def topic_ids(self) -> Sequence[uuid.UUID]: ...
    @property
    def group(self) -> str | None: ...
    @property
    def transactional_id(self) -> str | None: ...


class VerdictLike(Protocol):
    """The parts of a policy verdict a transcript keeps (Verdict satisfies it)."""

    @property
    def allowed(self) -> bool: ...
    @property
    def error_code(self) -> int: ...
    @property
    def reason(self) -> str: ...


#: One queued callback: the handler and its arguments.
_Work = tuple[Callable[..., None], tuple[Any, ...]]
#: Callbacks the worker may lag behind before the tunnel waits for it.
DEFAULT_MAX_QUEUED = 1024
#: Digests per produced event; a bigger batch is recorded as several events (small uploads).
MAX_DIGESTS_PER_EVENT = 256
#: Events of one callback written with one system call (well under any IOV_MAX).
WRITE_GROUP = 64


def split_produced(described: dict[str, Any]) -> list[dict[str, Any]]:
    """Cut one produced description into parts of at most MAX_DIGESTS_PER_EVENT digests."""
    digests: list[str] = described.get("digests") or []
    if len(digests) <= MAX_DIGESTS_PER_EVENT:
        return [described]
    parts = []
    first = described.get("first_offset")
    for n, start in enumerate(range(0, len(digests), MAX_DIGESTS_PER_EVENT)):
        chunk = digests[start : start + MAX_DIGESTS_PER_EVENT]
        part = {k: v for k, v in described.items() if k not in ("digests", "first_offset",
                                                                   "last_offset")}
        part.update(digests=chunk, part=n, part_record_count=len(chunk))
        if isinstance(first, int):
            part["first_offset"] = first + start
            part["last_offset"] = first + start + len(chunk) - 1
        parts.append(part)
    return parts


def describe_produced(
    records: bytes,
    base_offset: int,
    error_code: int,
    digests_of: Callable[[bytes], list[str]] = record_digests,
) -> dict[str, Any]:
    """Digest per record and broker-assigned offsets of a produced partition's records.

    `digests_of` computes the digests (`record_digests`, or a `DigestProcess` doing the same).
    """
    out: dict[str, Any] = {"bytes": len(records)}
    try:
        digests = digests_of(records)
    except KafkaProtocolError as exc:
        out.update(record_count=None, digests=[], undecodable=str(exc)[:200])
        return out
    out["record_count"] = len(digests)
    out["digests"] = digests
    if error_code == 0 and base_offset >= 0 and digests:
        # The broker gives the records consecutive offsets from base_offset, in order.
        out["first_offset"] = base_offset
        out["last_offset"] = base_offset + len(digests) - 1
    return out


def describe_fetched(fetched: FetchedPartition) -> dict[str, Any]:
    """Offsets and counts of fetched data, from its batch headers (no record is read)."""
    out: dict[str, Any] = {"bytes": fetched.records_size}
    if fetched.undecodable is not None:
        out["undecodable"] = fetched.undecodable[:200]
    out["record_count"] = sum(max(h.record_count, 0) for h in fetched.batches
                              if not h.is_control)
    if fetched.batches:
        last = fetched.batches[-1]
        out["first_offset"] = fetched.batches[0].base_offset
        out["last_offset"] = last.base_offset + last.last_offset_delta
    return out


class TranscriptRecorder:
    """Records one tunnel session: SessionObserver callbacks in, chained spool lines out."""

    def __init__(
        self,
        spool_dir: Path,
        *,
        subject: str,
        grant_id: str,
        session_id: str | None = None,
        cluster: str | None = None,
        approval_id: str | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        clock: Callable[[], float] = time.time,
        background_sync: bool = True,
        threaded: bool = True,
        max_queued: int = DEFAULT_MAX_QUEUED,
        digest_process: bool | None = None,
    ) -> None:
        self.session_id = session_id or uuid.uuid4().hex
        self.subject = subject
        self.grant_id = grant_id
        self._clock = clock
        self._lock = threading.Lock()
        self._chain = HashChain()
        self._writer = SpoolWriter(spool_dir, self.session_id, flush_interval=flush_interval,
                                   sync_in_append=not background_sync)
        self.path = self._writer.path
        self._sync: PeriodicSync | None = None
        self.sealed = False
        self.counts: dict[str, int] = {
            "requests": 0,
            "refused": 0,
            "produced_records": 0,
            "produced_bytes": 0,
            "fetched_records": 0,
            "fetched_bytes": 0,
            "connections": 0,
        }
        self._connections: set[str] = set()
        self.started_at = clock()
        self._emit(
            EventType.SESSION_START,
            {
                "session_id": self.session_id,
                "subject": subject,
                "grant_id": grant_id,
                "cluster": cluster,
                "approval_id": approval_id,
            },
        )
        if background_sync:
            self._sync = PeriodicSync(self._writer, flush_interval)
            self._sync.start()
        self.worker_errors = 0
        self._stopped = False
        self._queue: queue.Queue[_Work | None] | None = None
        self._worker: threading.Thread | None = None
        #: Computes produced-record digests: a DigestProcess's when its child runs.
        self._digests_of: Callable[[bytes], list[str]] = record_digests
        self._digest_process: DigestProcess | None = None
        if digest_process is None:  # the child only helps where hashing holds the GIL
            digest_process = not digest_module.DIGESTS_ACCELERATED
        if threaded and digest_process:
            helper = DigestProcess()
            if helper.start():  # before the worker starts, which then owns it
                self._digest_process = helper
                self._digests_of = helper.record_digests
        if threaded:
            self._queue = queue.Queue(maxsize=max_queued)
            self._worker = threading.Thread(target=self._drain, name="transcript", daemon=True)
            self._worker.start()

    # -- SessionObserver -------------------------------------------------------------------
    # Each callback takes the time and hands its arguments to the worker thread, so digests
    # and spool writes do not sit in the tunnel's request/response path. The queue is
    # bounded: a recorder that falls behind slows the tunnel rather than growing memory.

    def on_request(self, conn_id: str, summary: SummaryLike, verdict: VerdictLike) -> None:
        """One event per request decided: who asked what, and what the policy answered."""
        self._submit(self._record_request, self._clock(), conn_id, summary, verdict)

    def on_produced(
        self,
        conn_id: str,
        topic: str,
        partition: int,
        records: bytes,
        base_offset: int,
        error_code: int,
    ) -> None:
        """Produced records as digests with the offsets the broker gave them."""
        self._submit(self._record_produced, self._clock(), conn_id, topic, partition, records,
                     base_offset, error_code)

    def on_fetched(
        self, conn_id: str, topic: str, fetched: FetchedPartition, mask_counts: Mapping[str, int]
    ) -> None:
        """Fetched offsets and sizes; empty successful fetches (idle polling) are not kept."""
        if not fetched.records_size and fetched.error_code == 0:
            return
        self._submit(self._record_fetched, self._clock(), conn_id, topic, fetched,
                     dict(mask_counts))

    def on_close(self, conn_id: str, reason: str) -> None:
        """A client connection ended."""
        self._submit(self._record_close, self._clock(), conn_id, reason)

    def _submit(self, handler: Callable[..., None], *args: Any) -> None:
        if self._queue is None:
            handler(*args)
        elif not self._stopped:
            self._queue.put((handler, args))

    def _drain(self) -> None:
        assert self._queue is not None
        try:
            self._drain_queue(self._queue)
        finally:
            self._digests_of = record_digests
            if self._digest_process is not None:
                self._digest_process.close()

    def _drain_queue(self, work: queue.Queue[_Work | None]) -> None:
        while True:
            item = work.get()
            try:
                if item is None:
                    return
                handler, args = item
                handler(*args)
            except Exception:  # one bad callback must not stop the session's recording
                self.worker_errors += 1
            finally:
                work.task_done()

    def flush(self) -> None:
        """Wait until every callback so far is in the spool file."""
        if self._queue is not None and not self._stopped:
            self._queue.join()

    def _stop_worker(self) -> None:
        """Let the worker write everything queued so far, then stop it."""
        self._stopped = True
        if self._queue is not None and self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()

    # -- the events ------------------------------------------------------------------------

    def _record_request(self, ts: float, conn_id: str, summary: SummaryLike,
                        verdict: VerdictLike) -> None:
        topics = list(summary.topics) or [str(t) for t in summary.topic_ids]
        fields: dict[str, Any] = {
            "conn": conn_id,
            "client_id": summary.client_id,
            "api_key": summary.api_key,
            "api_version": summary.api_version,
            "correlation_id": summary.correlation_id,
            "operation": str(summary.kind),
            "topics": topics,
            "allowed": verdict.allowed,
            "error_code": verdict.error_code,
            "reason": verdict.reason,
        }
        if summary.group is not None:
            fields["group"] = summary.group
        if summary.transactional_id is not None:
            fields["transactional_id"] = summary.transactional_id
        with self._lock:
            self._see_connection(conn_id)
            self.counts["requests"] += 1
            if not verdict.allowed:
                self.counts["refused"] += 1
            self._emit_locked(EventType.REQUEST, fields, ts)

    def _record_produced(self, ts: float, conn_id: str, topic: str, partition: int,
                         records: bytes, base_offset: int, error_code: int) -> None:
        fields = describe_produced(records, base_offset, error_code, self._digests_of)
        fields.update(conn=conn_id, topic=topic, partition=partition, error_code=error_code)
        with self._lock:
            self._see_connection(conn_id)
            if error_code == 0:
                self.counts["produced_records"] += fields.get("record_count") or 0
                self.counts["produced_bytes"] += len(records)
            self._emit_many_locked(EventType.PRODUCED, split_produced(fields), ts)

    def _record_fetched(self, ts: float, conn_id: str, topic: str, fetched: FetchedPartition,
                        mask_counts: Mapping[str, int]) -> None:
        fields = describe_fetched(fetched)
        fields.update(conn=conn_id, topic=topic, partition=fetched.partition_index,
                      error_code=fetched.error_code)
        if mask_counts:
            fields["mask_counts"] = {str(k): int(v) for k, v in mask_counts.items()}
        with self._lock:
            self._see_connection(conn_id)
            self.counts["fetched_records"] += fields["record_count"]
            self.counts["fetched_bytes"] += fetched.records_size
            self._emit_locked(EventType.FETCHED, fields, ts)

    def _record_close(self, ts: float, conn_id: str, reason: str) -> None:
        with self._lock:
            self._emit_locked(EventType.CLOSE, {"conn": conn_id, "reason": reason}, ts)

    # -- session lifetime ------------------------------------------------------------------

    def seal(self, reason: str) -> None:
        """Write the final event (counts and chain head) and close the spool; idempotent."""
        self._stop_worker()
        with self._lock:
            if self.sealed:
                return
            if self._sync is not None:
                self._sync.stop()
            self.counts["connections"] = len(self._connections)
            fields = {
                "reason": reason,
                "counts": dict(self.counts),
                "events": self._chain.next_seq + 1,
                "head": self._chain.head,
            }
            self._emit_locked(EventType.SESSION_END, fields)
            self.sealed = True
            self._writer.close()

    def abandon(self) -> None:
        """Stop recording without sealing (for tests of crash recovery)."""
        self._stop_worker()
        if self._sync is not None:
            self._sync.stop()
        self._writer.close()

    def __enter__(self) -> TranscriptRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seal("error" if exc_type is not None else "closed")

    @property
    def head(self) -> str:
        return self._chain.head

    @property
    def event_count(self) -> int:
        return self._chain.next_seq

    def _see_connection(self, conn_id: str) -> None:
        self._connections.add(conn_id)

    def _emit(self, event_type: EventType, fields: Mapping[str, Any]) -> Event | None:
        with self._lock:
            return self._emit_locked(event_type, fields)

    def _emit_many_locked(self, event_type: EventType, parts: list[dict[str, Any]],
                          ts: float) -> None:
        """Chain and write several events of one callback, a single write per WRITE_GROUP.

        As with `_emit_locked`, a group the disk refuses is taken back from the chain (and
        counted lost), so the chain on disk stays unbroken; groups before it stay written.
        """
        for start in range(0, len(parts), WRITE_GROUP):
            if self.sealed:
                return
            seq, head = self._chain.next_seq, self._chain.head
            lines = []
            for fields in parts[start : start + WRITE_GROUP]:
                self._chain.append(event_type.value, ts, fields)
                lines.append(self._chain.last_line)
            try:
                self._writer.append_lines(lines)
            except OSError:
                self._chain.next_seq, self._chain.head = seq, head
                self.counts["lost_events"] = self.counts.get("lost_events", 0) + len(lines)
                raise

    def _emit_locked(self, event_type: EventType, fields: Mapping[str, Any],
                     ts: float | None = None) -> Event | None:
        if self.sealed:
            return None  # a late callback after the seal (connection teardown) is not recorded
        seq, head = self._chain.next_seq, self._chain.head
        event = self._chain.append(event_type.value, self._clock() if ts is None else ts, fields)
        try:
            self._writer.append(event, self._chain.last_line)
        except OSError:
            # Not in the file (disk full?): undo it, so the chain on disk stays unbroken,
            # and say in the seal how many events were lost.
            self._chain.next_seq, self._chain.head = seq, head
            self.counts["lost_events"] = self.counts.get("lost_events", 0) + 1
            raise
        return event
