"""The transcript store: sessions bound to grants, chunked idempotent uploads, chain checks,
queries, and the answers to "who produced / consumed offset N of topic T partition P".

Uploads are resumable: the server says how many events it holds (`next_seq`) and
accepts a chunk starting at or before that point; events it already has must be
identical (so a chunk sent twice is stored once) and new events must continue the
hash chain from the stored head. A broken chain is refused with 409 and the first
bad sequence number, and the refusal is audited. Each session row is locked while a
chunk is applied, so concurrent uploads from several server processes serialize.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from streamctl.server.audit import add_audit, is_auditor
from streamctl.server.auth import CurrentPrincipal, Principal, State
from streamctl.server.errors import ApiError, error_body
from streamctl.server.state import ServerState
from streamctl.server.store import Base, GrantRecord, as_utc, utcnow
from streamctl.transcript.chain import event_hash, link_of, verify_chain
from streamctl.transcript.events import ZERO_HASH, EventType, canonical_json, parse_event_line

_ID = BigInteger().with_variant(Integer(), "sqlite")
#: Most events one chunk may carry.
MAX_CHUNK_EVENTS = 5000
_TYPES = frozenset(t.value for t in EventType)


class TranscriptSession(Base):
    """One tunnel session's transcript header: whose, which grant, how far uploaded, sealed?"""

    __tablename__ = "transcript_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    head: Mapped[str] = mapped_column(String(64), default=ZERO_HASH)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|sealed|unsealed
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class TranscriptEvent(Base):
    """One stored event, byte for byte as the tunnel chained it."""

    __tablename__ = "transcript_events"

    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transcript_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Float)
    type: Mapped[str] = mapped_column(String(32))
    hash: Mapped[str] = mapped_column(String(64))
    link: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)


class TranscriptTopic(Base):
    """Which topics a session touched (for queries by topic)."""

    __tablename__ = "transcript_topics"

    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transcript_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class TranscriptOffsets(Base):
    """An offset range of one partition that a session produced or consumed."""

    __tablename__ = "transcript_offsets"
    __table_args__ = (
        Index("ix_transcript_offsets_lookup", "topic", "partition", "kind", "first_offset"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("transcript_sessions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # produced|fetched
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    first_offset: Mapped[int] = mapped_column(BigInteger)
    last_offset: Mapped[int] = mapped_column(BigInteger)


class SessionIn(BaseModel):
    """Body of POST /v1/sessions."""

    session_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    grant_id: str = Field(min_length=1, max_length=64)
    started_at: float | None = None


class SealIn(BaseModel):
    """Body of POST /v1/sessions/{id}/seal."""

    sealed: bool = True
    event_count: int = Field(ge=0)
    head: str = Field(min_length=64, max_length=64)


def _iso(value: dt.datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def session_dict(session: Session, row: TranscriptSession) -> dict[str, Any]:
    """The API shape of a transcript session."""
    topics = session.scalars(
        select(TranscriptTopic.topic).where(TranscriptTopic.session_id == row.id)
    )
    return {
        "session_id": row.id,
        "grant_id": row.grant_id,
        "subject": row.subject,
        "started_at": _iso(row.started_at),
        "uploaded_at": _iso(row.created_at),
        "closed_at": _iso(row.closed_at),
        "status": row.status,
        "sealed": row.status == "sealed",
        "next_seq": row.next_seq,
        "events": row.next_seq,
        "head": row.head,
        "counts": row.counts,
        "topics": sorted(topics),
    }


def _conflict(error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({**error_body(error, message), **extra}, status_code=409)


def _own_session(session: Session, principal: Principal, session_id: str,
                 *, lock: bool = False) -> TranscriptSession:
    stmt = select(TranscriptSession).where(TranscriptSession.id == session_id)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is None or (row.subject != principal.subject and not is_auditor(principal)):
        raise ApiError(404, "not_found", f"no transcript session {session_id}",
                       hint="streamctl sessions ls")
    return row


def open_session(
    state: ServerState, principal: Principal, body: SessionIn
) -> tuple[int, dict[str, Any]]:
    """Create the session header (201) or return the existing one (200) so uploads resume.

    Two uploaders may open the same session at once (on two server processes): the
    loser of the insert race gets the winner's row.
    """
    try:
        return _open_session(state, principal, body)
    except IntegrityError:
        return _open_session(state, principal, body)


def _open_session(
    state: ServerState, principal: Principal, body: SessionIn
) -> tuple[int, dict[str, Any]]:
    with state.store.session() as session:
        grant = session.get(GrantRecord, body.grant_id)
        if grant is None or grant.subject != principal.subject:
            add_audit(session, kind="transcript.open", subject=principal.subject,
                      outcome="refused", detail={"session_id": body.session_id,
                                                 "grant_id": body.grant_id,
                                                 "reason": "unknown grant"})
            session.commit()
            raise ApiError(404, "unknown_grant",
                           f"no grant {body.grant_id} issued to {principal.subject}")
        row = session.get(TranscriptSession, body.session_id)
        if row is not None:
            if row.grant_id != body.grant_id or row.subject != principal.subject:
                raise ApiError(409, "session_conflict",
                               f"session {body.session_id} belongs to another grant")
            return 200, session_dict(session, row)
        started = (dt.datetime.fromtimestamp(body.started_at, dt.UTC)
                   if body.started_at is not None else utcnow())
        row = TranscriptSession(
            id=body.session_id, grant_id=grant.id, subject=grant.subject, started_at=started,
            created_at=utcnow(), next_seq=0, head=ZERO_HASH, status="open",
        )
        session.add(row)
        session.flush()
        return 201, session_dict(session, row)


def _parse_chunk(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for n, line in enumerate(raw.splitlines()):
        if not line.strip():
            continue
        try:
            events.append(parse_event_line(line))
        except ValueError as exc:
            raise ApiError(400, "malformed_events",
                           f"line {n + 1} of the chunk is not a JSON object") from exc
        if len(events) > MAX_CHUNK_EVENTS:
            raise ApiError(413, "chunk_too_large", f"at most {MAX_CHUNK_EVENTS} events per chunk")
    return events


def _index_event(session: Session, row: TranscriptSession, event: dict[str, Any],
                 topics: set[str]) -> None:
    """Remember the topics and offset ranges an event names, for queries."""
    kind = event.get("type")
    if kind == EventType.REQUEST:
        topics.update(str(t) for t in event.get("topics") or () if isinstance(t, str))
    if kind in (EventType.PRODUCED, EventType.FETCHED):
        topic = event.get("topic")
        if isinstance(topic, str):
            topics.add(topic)
        first, last, part = event.get("first_offset"), event.get("last_offset"), event.get(
            "partition")
        if (isinstance(topic, str) and isinstance(first, int) and isinstance(last, int)
                and isinstance(part, int) and event.get("error_code", 0) == 0):
            session.add(TranscriptOffsets(
                session_id=row.id, seq=int(event["seq"]), kind=str(kind), topic=topic,
                partition=part, first_offset=first, last_offset=last,
            ))


def _refuse_chain(session: Session, row: TranscriptSession, principal: Principal,
                  bad: int, why: str) -> JSONResponse:
    add_audit(session, kind="transcript.store", subject=principal.subject, outcome="refused",
              detail={"session_id": row.id, "first_bad_seq": bad, "reason": why})
    return _conflict("chain_broken", f"the transcript's hash chain breaks at seq {bad}: {why}",
                     first_bad_seq=bad, next_seq=row.next_seq)


def store_chunk(state: ServerState, principal: Principal, session_id: str, from_seq: int,
                raw: bytes) -> JSONResponse:
    """Apply one chunk of events; idempotent, refuses gaps and broken chains.

    A concurrent upload of the same session that wins a race (SQLite has no row locks)
    makes this attempt fail on insert; it is then retried against the new state.
    """
    events = _parse_chunk(raw)
    for attempt in range(6):
        try:
            return _store_chunk(state, principal, session_id, from_seq, events)
        except (IntegrityError, OperationalError):
            if attempt == 5:
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")


def _store_chunk(state: ServerState, principal: Principal, session_id: str, from_seq: int,
                 events: list[dict[str, Any]]) -> JSONResponse:
    with state.store.session() as session:
        row = _own_session(session, principal, session_id, lock=True)
        if row.status != "open":
            if from_seq + len(events) <= row.next_seq:
                return JSONResponse({"next_seq": row.next_seq, "stored": 0})
            raise ApiError(409, "session_closed", f"session {session_id} is already {row.status}")
        if from_seq > row.next_seq:
            return _conflict("seq_gap", f"the server holds events up to seq {row.next_seq - 1}; "
                             f"send from seq {row.next_seq}", next_seq=row.next_seq)
        prev = ZERO_HASH
        if from_seq > 0:
            before = session.get(TranscriptEvent, (row.id, from_seq - 1))
            prev = before.link if before is not None else ZERO_HASH
        bad = verify_chain(events, start_seq=from_seq, prev=prev)
        if bad is not None:
            response = _refuse_chain(session, row, principal, bad, "edited, missing or reordered")
            session.commit()
            return response
        stored = 0
        topics: set[str] = set()
        for event in events:
            seq = int(event["seq"])
            if seq < row.next_seq:
                have = session.get(TranscriptEvent, (row.id, seq))
                if have is None or have.hash != event["hash"]:
                    response = _refuse_chain(session, row, principal, seq,
                                             "differs from the event already stored")
                    session.commit()
                    return response
                continue
            problem = _check_event(row, event)
            if problem:
                response = _refuse_chain(session, row, principal, seq, problem)
                session.commit()
                return response
            session.add(TranscriptEvent(
                session_id=row.id, seq=seq, ts=float(event.get("ts", 0.0)),
                type=str(event["type"]), hash=str(event["hash"]), link=link_of(event),
                body=canonical_json(event).decode("ascii"),
            ))
            _index_event(session, row, event, topics)
            row.next_seq = seq + 1
            row.head = link_of(event)
            row.last_ts = float(event.get("ts", 0.0))
            stored += 1
        known = set(session.scalars(
            select(TranscriptTopic.topic).where(TranscriptTopic.session_id == row.id)))
        for topic in sorted(topics - known):
            session.add(TranscriptTopic(session_id=row.id, topic=topic[:255]))
        return JSONResponse({"next_seq": row.next_seq, "stored": stored})


def _check_event(row: TranscriptSession, event: dict[str, Any]) -> str:
    """What is wrong with an event beyond its chain (type, session identity), or ""."""
    if event.get("type") not in _TYPES:
        return f"unknown event type {event.get('type')!r}"
    ts = event.get("ts")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return "ts must be a number"
    if event_hash(event) != event.get("hash"):
        return "hash does not match"
    if event["seq"] == 0:
        if event["type"] != EventType.SESSION_START:
            return "the first event must be session_start"
        if event.get("session_id") != row.id or event.get("grant_id") != row.grant_id:
            return "session_start names another session or grant"
    elif event["type"] == EventType.SESSION_START:
        return "session_start after the first event"
    return ""


def seal_session(state: ServerState, principal: Principal, session_id: str,
                 body: SealIn) -> JSONResponse:
    """Close a fully uploaded session: sealed by its tunnel, or recovered unsealed."""
    with state.store.session() as session:
        row = _own_session(session, principal, session_id, lock=True)
        if row.next_seq != body.event_count or row.head != body.head:
            return _conflict(
                "incomplete", f"the server holds {row.next_seq} events of {body.event_count}; "
                "upload the rest first", next_seq=row.next_seq)
        if row.status == "open":
            last = (session.get(TranscriptEvent, (row.id, row.next_seq - 1))
                    if row.next_seq else None)
            ended = last is not None and last.type == EventType.SESSION_END
            if body.sealed and not ended:
                return _conflict("not_sealed", "the last event is not session_end",
                                 next_seq=row.next_seq)
            row.status = "sealed" if ended else "unsealed"
            row.closed_at = utcnow()
            if ended and last is not None:
                counts = json.loads(last.body).get("counts")
                row.counts = counts if isinstance(counts, dict) else None
            add_audit(session, kind="transcript.store", subject=principal.subject,
                      outcome="stored", detail={"session_id": row.id, "grant_id": row.grant_id,
                                                "events": row.next_seq, "status": row.status})
        return JSONResponse(session_dict(session, row))


def _visible(principal: Principal) -> ColumnElement[bool]:
    """Auditors see every session; anyone else only their own."""
    if is_auditor(principal):
        return true()
    return TranscriptSession.subject == principal.subject


def _who(state: ServerState, principal: Principal, kind: str, topic: str, partition: int,
         offset: int) -> dict[str, Any]:
    with state.store.session() as session:
        stmt = (
            select(TranscriptOffsets, TranscriptSession)
            .join(TranscriptSession, TranscriptSession.id == TranscriptOffsets.session_id)
            .where(and_(TranscriptOffsets.kind == kind, TranscriptOffsets.topic == topic,
                        TranscriptOffsets.partition == partition,
                        TranscriptOffsets.first_offset <= offset,
                        TranscriptOffsets.last_offset >= offset))
            .order_by(TranscriptOffsets.id)
            .limit(200)
        )
        matches = []
        for offs, sess in session.execute(stmt.where(_visible(principal))).all():
            event = session.get(TranscriptEvent, (offs.session_id, offs.seq))
            body = json.loads(event.body) if event is not None else {}
            match: dict[str, Any] = {
                "session_id": sess.id, "subject": sess.subject, "grant_id": sess.grant_id,
                "seq": offs.seq, "ts": body.get("ts"), "conn": body.get("conn"),
                "first_offset": offs.first_offset, "last_offset": offs.last_offset,
                "session_status": sess.status,
            }
            digests = body.get("digests")
            if kind == "produced" and isinstance(digests, list):
                i = offset - offs.first_offset
                if 0 <= i < len(digests):
                    match["record_digest"] = digests[i]
            matches.append(match)
    return {"topic": topic, "partition": partition, "offset": offset, "matches": matches}


router = APIRouter(tags=["transcripts"])


@router.post("/v1/sessions")
def post_session(body: SessionIn, principal: CurrentPrincipal, state: State) -> JSONResponse:
    """Open (or reopen, to resume an upload) a transcript session bound to your grant."""
    status, out = open_session(state, principal, body)
    return JSONResponse(out, status_code=status)


@router.put("/v1/sessions/{session_id}/events")
async def put_events(session_id: str, request: Request, principal: CurrentPrincipal,
                     state: State, from_seq: Annotated[int, Query(ge=0)]) -> JSONResponse:
    """Upload events from `from_seq` on, as JSON lines; sending a chunk again is harmless."""
    raw = await request.body()
    return await anyio.to_thread.run_sync(
        store_chunk, state, principal, session_id, from_seq, raw)


@router.post("/v1/sessions/{session_id}/seal")
def post_seal(session_id: str, body: SealIn, principal: CurrentPrincipal,
              state: State) -> JSONResponse:
    """Mark a fully uploaded session closed (sealed, or unsealed when its tunnel died)."""
    return seal_session(state, principal, session_id, body)


@router.get("/v1/sessions")
def list_sessions(
    principal: CurrentPrincipal,
    state: State,
    subject: str | None = None,
    topic: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Sessions by subject, topic and start time (your own unless you are an auditor)."""
    with state.store.session() as session:
        stmt = select(TranscriptSession).order_by(TranscriptSession.started_at.desc())
        if subject is not None:
            stmt = stmt.where(TranscriptSession.subject == subject)
        if topic is not None:
            stmt = stmt.where(TranscriptSession.id.in_(
                select(TranscriptTopic.session_id).where(TranscriptTopic.topic == topic)))
        if since is not None:
            stmt = stmt.where(TranscriptSession.started_at >= since)
        if until is not None:
            stmt = stmt.where(TranscriptSession.started_at < until)
        rows = session.scalars(stmt.where(_visible(principal)).limit(limit))
        return {"sessions": [session_dict(session, r) for r in rows]}


@router.get("/v1/sessions/{session_id}")
def get_session(session_id: str, principal: CurrentPrincipal, state: State) -> dict[str, Any]:
    """One session's header, with its chain re-verified from the stored events."""
    with state.store.session() as session:
        row = _own_session(session, principal, session_id)
        out = session_dict(session, row)
        events = _load_events(session, row.id, 0, None)
        out["first_bad_seq"] = verify_chain(events)
        out["verified"] = out["first_bad_seq"] is None
        return out


def _load_events(session: Session, session_id: str, from_seq: int,
                 limit: int | None) -> Sequence[dict[str, Any]]:
    stmt = (select(TranscriptEvent.body).where(TranscriptEvent.session_id == session_id)
            .where(TranscriptEvent.seq >= from_seq).order_by(TranscriptEvent.seq))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [json.loads(b) for b in session.scalars(stmt)]


@router.get("/v1/sessions/{session_id}/events")
def get_events(
    session_id: str,
    principal: CurrentPrincipal,
    state: State,
    from_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 5000,
) -> dict[str, Any]:
    """Stored events in order (for `sessions show/play`)."""
    with state.store.session() as session:
        row = _own_session(session, principal, session_id)
        events = _load_events(session, row.id, from_seq, limit)
        return {"session_id": row.id, "subject": row.subject, "status": row.status,
                "events": events, "next_seq": from_seq + len(events)}


@router.get("/v1/audit/produced")
def who_produced(principal: CurrentPrincipal, state: State, topic: str,
                 partition: Annotated[int, Query(ge=0)],
                 offset: Annotated[int, Query(ge=0)]) -> dict[str, Any]:
    """Which session and subject produced this offset (with the record's digest)."""
    return _who(state, principal, "produced", topic, partition, offset)


@router.get("/v1/audit/consumed")
def who_consumed(principal: CurrentPrincipal, state: State, topic: str,
                 partition: Annotated[int, Query(ge=0)],
                 offset: Annotated[int, Query(ge=0)]) -> dict[str, Any]:
    """Which sessions and subjects were sent this offset."""
    return _who(state, principal, "fetched", topic, partition, offset)


def register(app: FastAPI, state: ServerState) -> None:
    """Serve the transcript store and the who-produced / who-consumed answers."""
    app.include_router(router)
