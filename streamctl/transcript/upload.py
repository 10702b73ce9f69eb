"""Upload a spooled transcript to the access server in idempotent, resumable chunks.

The server says how many events it already holds (`next_seq`); the uploader sends
from there, so a retry after any failure neither duplicates nor skips events. The
spool file is removed only once the server accepted every event and the seal.
HTTP itself is a transport callable supplied by the caller (see
`streamctl.client.transcripts`), which keeps this module free of I/O libraries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from streamctl.transcript.chain import chain_head
from streamctl.transcript.events import Event, EventType, canonical_json
from streamctl.transcript.spool import SPOOL_SUFFIX, find_pending, is_sealed, read_spool

#: Events per PUT; small enough to keep requests short, big enough to be cheap.
DEFAULT_CHUNK_SIZE = 500
#: Most bytes per PUT, under the server's default request-body limit (64 KiB).
DEFAULT_CHUNK_BYTES = 48 * 1024
#: Content type of an events chunk.
JSON_LINES = "application/jsonl"


@dataclass(frozen=True)
class TransportResponse:
    """What the uploader needs from an HTTP answer: status and the decoded JSON body."""

    status: int
    body: Mapping[str, Any]


class Transport(Protocol):
    """Sends one request to the access server (path relative to its base URL)."""

    def __call__(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> TransportResponse: ...


class UploadError(Exception):
    """The upload did not complete; the spool file was kept for a later retry."""

    def __init__(self, message: str, *, status: int | None = None,
                 first_bad_seq: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.first_bad_seq = first_bad_seq
        self.permanent = permanent  # retrying the same bytes will not help (e.g. broken chain)


@dataclass(frozen=True)
class UploadResult:
    """A finished upload."""

    session_id: str
    events: int
    sealed: bool
    resumed_from: int  # events the server already had before this upload


def _fail(what: str, resp: TransportResponse) -> UploadError:
    code = str(resp.body.get("error", "")) or f"http_{resp.status}"
    message = str(resp.body.get("message", ""))
    bad = resp.body.get("first_bad_seq")
    return UploadError(
        f"{what}: server answered {resp.status} {code}" + (f" ({message})" if message else ""),
        status=resp.status,
        first_bad_seq=int(bad) if isinstance(bad, int) else None,
        permanent=resp.status in (400, 403, 404, 409, 422) and code != "seq_gap",
    )


def _send(transport: Transport, method: str, path: str, **kw: Any) -> TransportResponse:
    """One transport call; any failure to get an answer becomes an UploadError (spool kept)."""
    try:
        return transport(method, path, **kw)
    except UploadError:
        raise
    except Exception as exc:  # the transport's own errors (unreachable, not logged in, ...)
        raise UploadError(f"{method} {path.split('?')[0]}: {exc}") from exc


def _chunk_body(events: Sequence[Event]) -> bytes:
    return b"".join(canonical_json(e) + b"\n" for e in events)


def _next_chunk(events: Sequence[Event], seq: int, max_events: int,
                max_bytes: int) -> Sequence[Event]:
    """Events from `seq` on, at most max_events and max_bytes (but always at least one)."""
    size = 0
    end = seq
    while end < len(events) and end - seq < max_events:
        size += len(canonical_json(events[end])) + 1
        if size > max_bytes and end > seq:
            break
        end += 1
    return events[seq:end]


def upload_events(
    session_id: str,
    events: Sequence[Event],
    transport: Transport,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> UploadResult:
    """Open (or reopen) the session on the server, send the events it lacks, then seal."""
    if not events or events[0].get("type") != EventType.SESSION_START:
        raise UploadError(f"transcript {session_id} does not begin with session_start",
                          permanent=True)
    start = events[0]
    sid = quote(session_id, safe="")
    opened = _send(
        transport,
        "POST",
        "/v1/sessions",
        json_body={
            "session_id": session_id,
            "grant_id": start.get("grant_id"),
            "started_at": start.get("ts"),
        },
    )
    if opened.status not in (200, 201):
        raise _fail(f"opening session {session_id}", opened)
    seq = int(opened.body.get("next_seq", 0))
    resumed_from = seq
    gaps = 0
    while seq < len(events):
        chunk = _next_chunk(events, seq, chunk_size, chunk_bytes)
        resp = _send(
            transport,
            "PUT",
            f"/v1/sessions/{sid}/events?from_seq={seq}",
            content=_chunk_body(chunk),
            content_type=JSON_LINES,
        )
        if resp.status == 200:
            seq = int(resp.body.get("next_seq", seq + len(chunk)))
            continue
        if resp.status == 409 and resp.body.get("error") == "seq_gap" and gaps < 3:
            gaps += 1  # another uploader moved the server ahead or behind: resume where it is
            seq = int(resp.body.get("next_seq", seq))
            continue
        raise _fail(f"uploading events of {session_id} from seq {seq}", resp)
    sealed = is_sealed(events)
    done = _send(
        transport,
        "POST",
        f"/v1/sessions/{sid}/seal",
        json_body={"sealed": sealed, "event_count": len(events), "head": chain_head(events)},
    )
    if done.status != 200:
        raise _fail(f"sealing session {session_id}", done)
    return UploadResult(session_id, len(events), sealed, resumed_from)


def upload_spool(
    path: Path, transport: Transport, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> UploadResult:
    """Upload one spool file and remove it on success; on failure it stays for a retry."""
    session_id = path.name[: -len(SPOOL_SUFFIX)] if path.name.endswith(SPOOL_SUFFIX) else path.stem
    events = read_spool(path)
    result = upload_events(session_id, events, transport, chunk_size=chunk_size)
    path.unlink(missing_ok=True)
    return result


@dataclass(frozen=True)
class SyncOutcome:
    """One pending session after a sync attempt: uploaded, or the reason it was kept."""

    session_id: str
    sealed: bool
    uploaded: bool
    error: str | None = None


def sync_pending(
    spool_dir: Path, transport: Transport, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> list[SyncOutcome]:
    """Upload every finished or abandoned session in the spool; keep the ones that fail."""
    outcomes: list[SyncOutcome] = []
    for pending in find_pending(spool_dir):
        try:
            upload_spool(pending.path, transport, chunk_size=chunk_size)
        except (UploadError, OSError) as exc:
            outcomes.append(SyncOutcome(pending.session_id, pending.sealed, False, str(exc)))
        else:
            outcomes.append(SyncOutcome(pending.session_id, pending.sealed, True))
    return outcomes
