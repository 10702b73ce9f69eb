"""Just-in-time approvals: stored requests and reviews, the HTTP endpoints, and the grant gate.

A requester asks for topics, operations and a time window; reviewers holding an
approver role for the topics' classes approve or deny (never the requester, never
twice); N distinct approvals approve, one denial denies; pending requests expire.
`ApprovalStoreGate` is the ApprovalGate hook part 1's grant endpoint consults: an
approval covers only what was asked, inside its window, and caps the grant's expiry.
The rules themselves live in `approvals_rules`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from streamctl.kafka.operations import OperationKind
from streamctl.server.approvals_rules import (
    ApprovalFacts,
    ApprovalRuleError,
    check_request,
    check_review,
    check_use,
    effective_status,
    tally,
)
from streamctl.server.audit import add_audit
from streamctl.server.auth import CurrentPrincipal, State
from streamctl.server.errors import ApiError
from streamctl.server.hooks import ApprovalCheck
from streamctl.server.state import PolicySource, ServerState
from streamctl.server.store import Base, as_utc, utcnow
from streamctl.server.webhooks import (
    WebhookDispatcher,
    attach,
    detach,
    load_webhook_settings,
    notify,
)

_ID = BigInteger().with_variant(Integer(), "sqlite")
#: How often a long-poll looks at the database (another server process may decide).
WAIT_POLL_SECONDS = 0.25
#: Longest long-poll the server holds open.
MAX_WAIT_SECONDS = 120


class Approval(Base):
    """An approval request, bound to exactly the topics, operations and window asked for."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    requester: Mapped[str] = mapped_column(String(200), index=True)
    topics: Mapped[list[str]] = mapped_column(JSON)
    operations: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|approved|denied
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))  # pending until
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    threshold: Mapped[int] = mapped_column(Integer)
    approver_roles: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    reason_required: Mapped[bool] = mapped_column(Boolean)
    reviewers: Mapped[list[str]] = mapped_column(JSON)  # suggested reviewers, for notifications
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApprovalReview(Base):
    """One reviewer's decision; a reviewer reviews a request at most once (unique)."""

    __tablename__ = "approval_reviews"
    __table_args__ = (UniqueConstraint("approval_id", "reviewer", name="uq_review_once"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    approval_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("approvals.id", ondelete="CASCADE"), index=True
    )
    reviewer: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def _ts(value: dt.datetime) -> float:
    return as_utc(value).timestamp()


def _reviews(session: Session, approval_id: str) -> list[ApprovalReview]:
    stmt = select(ApprovalReview).where(ApprovalReview.approval_id == approval_id)
    return list(session.scalars(stmt.order_by(ApprovalReview.id)))


def approval_dict(session: Session, row: Approval, now: float) -> dict[str, Any]:
    """The contract's approval object, with the status as of `now`."""
    return {
        "id": row.id,
        "status": effective_status(row.status, now, _ts(row.expires_at), _ts(row.window_end)),
        "requester": row.requester,
        "topics": list(row.topics),
        "operations": list(row.operations),
        "window_start": as_utc(row.window_start).isoformat(),
        "window_end": as_utc(row.window_end).isoformat(),
        "reason": row.reason,
        "reviews": [
            {
                "reviewer": r.reviewer,
                "decision": r.decision,
                "reason": r.reason,
                "at": as_utc(r.created_at).isoformat(),
            }
            for r in _reviews(session, row.id)
        ],
        "threshold": row.threshold,
        "approver_roles": row.approver_roles,
        "reviewers": list(row.reviewers),
        "expires_at": as_utc(row.expires_at).isoformat(),
        "created_at": as_utc(row.created_at).isoformat(),
    }


def _refused(exc: ApprovalRuleError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, exc.hint)


def _notice(row: Approval, text: str, event: str, **extra: Any) -> dict[str, Any]:
    """A webhook payload: Slack-compatible `text` plus structured fields."""
    return {
        "text": text,
        "event": event,
        "approval_id": row.id,
        "requester": row.requester,
        "topics": list(row.topics),
        "operations": list(row.operations),
        "status": row.status,
        "window_start": as_utc(row.window_start).isoformat(),
        "window_end": as_utc(row.window_end).isoformat(),
        **extra,
    }


class ApprovalIn(BaseModel):
    """Body of POST /v1/approvals."""

    topics: list[str] = Field(min_length=1, max_length=100)
    operations: list[str] = Field(min_length=1, max_length=10)
    duration_seconds: int = Field(gt=0)
    reason: str = Field(default="", max_length=2000)
    start_at: dt.datetime | None = None
    reviewers: list[str] = Field(default_factory=list, max_length=50)


class ReviewIn(BaseModel):
    """Body of POST /v1/approvals/{id}/review."""

    decision: Literal["approve", "deny"]
    reason: str = Field(default="", max_length=2000)


def create_approval(
    state: ServerState, subject: str, roles: tuple[str, ...], body: ApprovalIn
) -> dict[str, Any]:
    """Validate and store a request; audit it either way; notify reviewers when stored."""
    policy = state.policy.current()
    now = state.now()
    with state.store.session() as session:
        try:
            req = check_request(
                policy,
                requester=subject,
                requester_roles=roles,
                topics=body.topics,
                operations=body.operations,
                duration_seconds=body.duration_seconds,
                reason=body.reason,
            )
            start = max(body.start_at.timestamp(), now) if body.start_at else now
            if start - now > req.max_window_seconds * 4:
                raise ApprovalRuleError(
                    "invalid_request", "start_at is too far in the future", status=422
                )
        except ApprovalRuleError as exc:
            add_audit(
                session,
                kind="approval.create",
                subject=subject,
                outcome="refused",
                detail={
                    "topics": body.topics,
                    "operations": body.operations,
                    "reason": exc.message,
                },
            )
            session.commit()
            raise _refused(exc) from exc
        created = dt.datetime.fromtimestamp(now, dt.UTC)
        row = Approval(
            id="ap_" + secrets.token_hex(8),
            requester=subject,
            topics=sorted(set(body.topics)),
            operations=sorted({OperationKind(o).value for o in body.operations}),
            reason=body.reason,
            status="pending",
            created_at=created,
            expires_at=created + dt.timedelta(seconds=req.pending_ttl_seconds),
            window_start=dt.datetime.fromtimestamp(start, dt.UTC),
            window_end=dt.datetime.fromtimestamp(start + body.duration_seconds, dt.UTC),
            threshold=req.threshold,
            approver_roles={k: list(v) for k, v in req.approver_roles.items()},
            reason_required=req.reason_required,
            reviewers=list(body.reviewers),
        )
        session.add(row)
        add_audit(
            session,
            kind="approval.create",
            subject=subject,
            outcome="created",
            detail={
                "approval_id": row.id,
                "topics": row.topics,
                "operations": row.operations,
                "reason": row.reason,
            },
        )
        session.flush()
        out = approval_dict(session, row, now)
    who = f" (reviewers: {', '.join(row.reviewers)})" if row.reviewers else ""
    notify(
        state,
        _notice(
            row,
            f"{subject} requests {', '.join(row.operations)} on {', '.join(row.topics)} for "
            f"{body.duration_seconds} s: {row.reason or 'no reason given'}{who}. "
            f"Review with: streamctl approvals approve {row.id}",
            "approval.created",
        ),
    )
    return out


def review_approval(
    state: ServerState, reviewer: str, roles: tuple[str, ...], approval_id: str, body: ReviewIn
) -> dict[str, Any]:
    """Apply one review under a row lock; refused reviews are audited too."""
    now = state.now()
    with state.store.session() as session:
        row = session.scalars(
            select(Approval).where(Approval.id == approval_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise ApiError(404, "not_found", f"no approval {approval_id}")
        reviews = _reviews(session, row.id)
        status = effective_status(row.status, now, _ts(row.expires_at), _ts(row.window_end))
        try:
            check_review(
                requester=row.requester,
                reviewer=reviewer,
                reviewer_roles=roles,
                approver_roles=row.approver_roles,
                status=status,
                earlier_reviewers=[r.reviewer for r in reviews],
                decision=body.decision,
                reason=body.reason,
                reason_required=row.reason_required,
            )
        except ApprovalRuleError as exc:
            add_audit(
                session,
                kind="approval.review",
                subject=reviewer,
                outcome="refused",
                detail={"approval_id": row.id, "decision": body.decision, "reason": exc.message},
            )
            session.commit()
            raise _refused(exc) from exc
        session.add(
            ApprovalReview(
                approval_id=row.id,
                reviewer=reviewer,
                decision=body.decision,
                reason=body.reason,
                created_at=utcnow(),
            )
        )
        decided = tally(
            [(r.reviewer, r.decision) for r in reviews] + [(reviewer, body.decision)], row.threshold
        )
        if decided != "pending":
            row.status = decided
            row.decided_at = utcnow()
        add_audit(
            session,
            kind="approval.review",
            subject=reviewer,
            outcome=body.decision,
            detail={
                "approval_id": row.id,
                "requester": row.requester,
                "reason": body.reason,
                "status": row.status,
            },
        )
        try:
            session.flush()
        except IntegrityError as exc:  # the same reviewer raced themselves on another process
            raise ApiError(
                409, "already_reviewed", f"{reviewer} already reviewed this request"
            ) from exc
        out = approval_dict(session, row, now)
    verb = {"approved": "approved", "denied": "denied"}.get(row.status, "reviewed")
    count = len(out["reviews"])
    notify(
        state,
        _notice(
            row,
            f"{reviewer} {'approved' if body.decision == 'approve' else 'denied'} {row.id} "
            f"({row.requester}: {', '.join(row.operations)} on {', '.join(row.topics)}): "
            f"request is {verb if row.status != 'pending' else 'pending'} "
            f"({count} of {row.threshold} review(s)){': ' + body.reason if body.reason else ''}",
            "approval.decided" if row.status != "pending" else "approval.reviewed",
            reviewer=reviewer,
            decision=body.decision,
        ),
    )
    return out


def load_approval(state: ServerState, approval_id: str) -> tuple[dict[str, Any], str]:
    """The approval as the API shows it, and its requester (for access checks)."""
    with state.store.session() as session:
        row = session.get(Approval, approval_id)
        if row is None:
            raise ApiError(
                404, "not_found", f"no approval {approval_id}", hint="streamctl approvals ls"
            )
        return approval_dict(session, row, state.now()), row.requester


def _may_see(
    state: ServerState, subject: str, roles: tuple[str, ...], approval: dict[str, Any]
) -> bool:
    if approval["requester"] == subject:
        return True
    held = set(roles)
    return all(held & set(r) for r in approval["approver_roles"].values())


class ApprovalStoreGate:
    """The ApprovalGate hook: may this approval back this grant request?

    Every (topic, operation) of the grant that the policy says needs an approval must
    be among the approval's topics and operations; pairs that need none (reading a
    high-value topic, say) do not widen or narrow what the approval covers.
    """

    def __init__(self, policy: PolicySource) -> None:
        self._policy = policy

    def check(
        self,
        session: Session,
        *,
        approval_id: str,
        subject: str,
        cluster: str,
        topics: tuple[str, ...],
        operations: frozenset[OperationKind],
        now: float,
    ) -> ApprovalCheck:
        row = session.get(Approval, approval_id)
        if row is None:
            return ApprovalCheck(False, f"no approval {approval_id}")
        facts = ApprovalFacts(
            approval_id=row.id, requester=row.requester, status=row.status,
            topics=tuple(row.topics), operations=frozenset(row.operations),
            window_start=_ts(row.window_start), window_end=_ts(row.window_end),
            pending_until=_ts(row.expires_at),
        )
        policy = self._policy.current()
        guarded = [
            (t, op.value) for t in topics for op in sorted(operations)
            if policy.explain(subject, t, op.value).needs_approval
        ] or [(t, op.value) for t in topics for op in sorted(operations)]
        why = check_use(facts, subject=subject, topics=sorted({t for t, _ in guarded}),
                        operations=sorted({op for _, op in guarded}), now=now)
        if why:
            return ApprovalCheck(False, why)
        return ApprovalCheck(True, f"approval {row.id} covers this grant", facts.window_end)


router = APIRouter(tags=["approvals"])


@router.post("/v1/approvals", status_code=201)
def post_approval(body: ApprovalIn, principal: CurrentPrincipal, state: State) -> dict[str, Any]:
    """Ask for a just-in-time approval."""
    return create_approval(state, principal.subject, principal.roles, body)


@router.get("/v1/approvals")
def list_approvals(
    principal: CurrentPrincipal,
    state: State,
    scope: Literal["mine", "reviewable"] = "mine",
    status: str | None = None,
) -> dict[str, Any]:
    """Your own requests, or the pending ones you could review."""
    now = state.now()
    with state.store.session() as session:
        stmt = select(Approval).order_by(Approval.created_at.desc()).limit(500)
        if scope == "mine":
            stmt = stmt.where(Approval.requester == principal.subject)
        else:
            stmt = stmt.where(Approval.requester != principal.subject).where(
                Approval.status == "pending"
            )
        items = [approval_dict(session, r, now) for r in session.scalars(stmt)]
    if scope == "reviewable":
        items = [
            a
            for a in items
            if a["status"] == "pending"
            and _may_see(state, principal.subject, principal.roles, a)
            and principal.subject not in {r["reviewer"] for r in a["reviews"]}
        ]
    if status is not None:
        items = [a for a in items if a["status"] == status]
    return {"approvals": items}


@router.get("/v1/approvals/{approval_id}")
def get_approval(approval_id: str, principal: CurrentPrincipal, state: State) -> dict[str, Any]:
    """One approval (its requester and its possible reviewers may read it)."""
    approval, _ = load_approval(state, approval_id)
    if not _may_see(state, principal.subject, principal.roles, approval):
        raise ApiError(404, "not_found", f"no approval {approval_id}")
    return approval


@router.get("/v1/approvals/{approval_id}/wait")
async def wait_approval(
    approval_id: str,
    principal: CurrentPrincipal,
    state: State,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 30.0,
) -> dict[str, Any]:
    """Long-poll until the approval is decided or expired, or the timeout passes.

    Polls the database, so a review made on another server process is seen too.
    """
    deadline = time.monotonic() + timeout
    while True:
        approval, _ = await anyio.to_thread.run_sync(load_approval, state, approval_id)
        if not _may_see(state, principal.subject, principal.roles, approval):
            raise ApiError(404, "not_found", f"no approval {approval_id}")
        if approval["status"] != "pending" or time.monotonic() >= deadline:
            return approval
        await anyio.sleep(min(WAIT_POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))


@router.post("/v1/approvals/{approval_id}/review")
def post_review(
    approval_id: str, body: ReviewIn, principal: CurrentPrincipal, state: State
) -> dict[str, Any]:
    """Approve or deny someone else's request."""
    return review_approval(state, principal.subject, principal.roles, approval_id, body)


def register(app: FastAPI, state: ServerState) -> None:
    """Serve approvals, gate grants on them, and start webhook delivery."""
    state.approval_gate = ApprovalStoreGate(state.policy)
    dispatcher = WebhookDispatcher(load_webhook_settings(state.config.path))
    attach(state, dispatcher)
    dispatcher.start()
    app.state.webhooks = dispatcher
    app.router.on_shutdown.append(lambda: detach(state))
    app.include_router(router)
