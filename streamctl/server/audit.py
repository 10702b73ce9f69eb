"""The audit log: one append-only row per decision the server makes, queryable and exportable.

Decisions are logins, grants issued or refused, approvals created or reviewed,
transcripts stored or refused, and retention deletions. Rows are only ever inserted
(retention is the one deleter, and it audits itself); the API offers no update.
`AuditRecorder` is the server's DecisionRecorder hook, so part 1's decisions land here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from streamctl.server.auth import CurrentPrincipal, Principal, State
from streamctl.server.state import ServerState
from streamctl.server.store import Base, Store, as_utc, utcnow

#: Roles that may read every audit event and every transcript (others see their own).
AUDITOR_ROLES = frozenset({"auditor", "admin"})

_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One decision: when, which kind, about whom, the outcome and details (never secrets)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


def is_auditor(principal: Principal) -> bool:
    """True when the caller may read everyone's audit events and transcripts."""
    return bool(AUDITOR_ROLES & set(principal.roles))


def audit_dict(row: AuditEvent) -> dict[str, Any]:
    """The API and export shape of one audit event."""
    return {
        "id": row.id,
        "ts": as_utc(row.ts).isoformat(),
        "kind": row.kind,
        "subject": row.subject,
        "outcome": row.outcome,
        "detail": row.detail,
    }


def add_audit(
    session: Session, *, kind: str, subject: str, outcome: str, detail: Mapping[str, Any]
) -> None:
    """Append one audit event inside the caller's transaction (it commits with the decision)."""
    session.add(
        AuditEvent(
            ts=utcnow(),
            kind=kind,
            subject=subject,
            outcome=outcome,
            detail=json.loads(json.dumps(dict(detail), default=str)),
        )
    )


class AuditRecorder:
    """The DecisionRecorder hook backed by the audit table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self,
        session: Session | None,
        *,
        kind: str,
        subject: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None:
        """Record in the caller's transaction when given one, else in a transaction of its own."""
        if session is not None:
            add_audit(session, kind=kind, subject=subject, outcome=outcome, detail=detail)
            return
        with self._store.session() as own:
            add_audit(own, kind=kind, subject=subject, outcome=outcome, detail=detail)


def query_audit(
    session: Session,
    *,
    subject: str | None = None,
    kind: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> list[AuditEvent]:
    """Audit events in insertion order, filtered."""
    stmt = select(AuditEvent).where(AuditEvent.id > after_id).order_by(AuditEvent.id)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    if kind is not None:
        stmt = stmt.where(AuditEvent.kind.startswith(kind))
    if since is not None:
        stmt = stmt.where(AuditEvent.ts >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.ts < until)
    return list(session.scalars(stmt.limit(limit)))


def export_lines(
    store: Store, *, since: dt.datetime | None = None, batch: int = 1000
) -> Iterator[str]:
    """Every audit event (from `since`) as one JSON line each, for a SIEM; streams in batches."""
    after = 0
    while True:
        with store.session() as session:
            rows = query_audit(session, since=since, after_id=after, limit=batch)
            lines = [json.dumps(audit_dict(r), sort_keys=True) for r in rows]
        if not rows:
            return
        after = rows[-1].id
        yield from lines


router = APIRouter(tags=["audit"])


@router.get("/v1/audit/events")
def list_audit_events(
    principal: CurrentPrincipal,
    state: State,
    subject: str | None = None,
    kind: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after_id: int = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Audit events; an auditor sees all, anyone else only events about themselves."""
    if not is_auditor(principal):
        subject = principal.subject
    with state.store.session() as session:
        rows = query_audit(
            session,
            subject=subject,
            kind=kind,
            since=since,
            until=until,
            after_id=after_id,
            limit=limit,
        )
        return {"events": [audit_dict(r) for r in rows]}


def register(app: FastAPI, state: ServerState) -> None:
    """Send every server decision to the audit table and serve the audit log."""
    state.recorder = AuditRecorder(state.store)
    app.include_router(router)
