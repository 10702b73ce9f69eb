"""Grants: decide a request against the policy, sign the JWT, list, revoke, and report status.

A request is allowed only when, for every topic and operation asked, a rule of
one of the caller's roles allows it; immutable topics refuse delete/alter;
writes to high-value topics need an approval that the approval gate (part 2)
accepts, and the grant never outlives that approval's window. The TTL asked
for may not exceed the smallest cap of the rules used.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import select

from streamctl.kafka.operations import OperationKind
from streamctl.policy.document import Explanation, PolicyDocument
from streamctl.policy.grant import Grant
from streamctl.policy.token import TokenError, verify_grant_token
from streamctl.server.auth import CurrentPrincipal, Principal, State, authenticate
from streamctl.server.errors import ApiError
from streamctl.server.state import ServerState
from streamctl.server.store import GrantRecord, as_utc

router = APIRouter(prefix="/v1/grants", tags=["grants"])

TopicName = Annotated[StrictStr, Field(min_length=1, max_length=249)]
GrantId = Annotated[str, Path(max_length=64)]


class GrantRequest(BaseModel):
    """Body of POST /v1/grants."""

    model_config = ConfigDict(extra="forbid")

    cluster: Annotated[StrictStr | None, Field(max_length=200)] = None
    topics: Annotated[list[TopicName], Field(min_length=1, max_length=100)]
    operations: Annotated[list[OperationKind], Field(min_length=1, max_length=6)]
    ttl_seconds: Annotated[StrictInt | None, Field(gt=0, le=366 * 86400)] = None
    reason: Annotated[StrictStr, Field(max_length=2000)] = ""
    approval_id: Annotated[StrictStr | None, Field(max_length=64)] = None


class GrantIssued(BaseModel):
    """Answer of POST /v1/grants."""

    grant_id: str
    token: str
    expires_at: str
    claims: dict[str, Any]


class GrantStatus(BaseModel):
    """What the tunnel polls to learn of a revocation."""

    grant_id: str
    active: bool
    revoked: bool
    expires_at: str


class GrantSummary(BaseModel):
    """One of the caller's grants."""

    grant_id: str
    cluster: str
    topics: list[str]
    operations: list[str]
    reason: str
    approval_id: str | None
    issued_at: str
    expires_at: str
    revoked: bool
    active: bool


def iso(value: dt.datetime | float) -> str:
    """UTC time as ISO 8601 with a Z."""
    if isinstance(value, float | int):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    return as_utc(value).isoformat().replace("+00:00", "Z")


def _refuse(
    state: ServerState,
    principal: Principal,
    error: str,
    message: str,
    hint: str | None,
    body: GrantRequest,
) -> ApiError:
    state.recorder.record(
        None,
        kind="grant",
        subject=principal.subject,
        outcome="refused",
        detail={
            "error": error,
            "reason": message,
            "topics": body.topics,
            "operations": [o.value for o in body.operations],
        },
    )
    return ApiError(403, error, message, hint)


def _approval_hint(topics: list[str], ops: set[OperationKind]) -> str:
    flags = " ".join(f"--{op.value}" for op in sorted(ops))
    return f"streamctl request-approval {' '.join(topics)} {flags}"


def decide(
    state: ServerState, principal: Principal, body: GrantRequest, policy: PolicyDocument
) -> tuple[list[Explanation], set[str], set[OperationKind]]:
    """Every (topic, operation) explained; refuse at the first that is not allowed."""
    explanations = []
    needs_topics: set[str] = set()
    needs_ops: set[OperationKind] = set()
    for topic in body.topics:
        for op in body.operations:
            exp = policy.explain(principal.subject, topic, op.value, principal.roles)
            if not exp.allowed:
                hint = None if "immutable" in exp.reason else "streamctl whoami"
                raise _refuse(state, principal, "not_allowed", exp.reason, hint, body)
            if exp.needs_approval:
                needs_topics.add(topic)
                needs_ops.add(op)
            explanations.append(exp)
    return explanations, needs_topics, needs_ops


@router.post("", status_code=201, response_model=GrantIssued)
def request_grant(body: GrantRequest, principal: CurrentPrincipal, state: State) -> GrantIssued:
    """Issue a signed grant, or refuse with 403, a reason and the next command to run."""
    policy = state.policy.current()
    cluster_name = body.cluster or policy.default_cluster
    cluster = policy.clusters.get(cluster_name)
    if cluster is None:
        known = ", ".join(sorted(policy.clusters))
        raise ApiError(
            404, "unknown_cluster", f"no cluster named {cluster_name!r} (known: {known})"
        )
    if policy.reason_required and not body.reason.strip():
        raise _refuse(
            state,
            principal,
            "reason_required",
            "a reason is required for every grant",
            'add --reason "why you need it"',
            body,
        )
    explanations, needs_topics, needs_ops = decide(state, principal, body, policy)
    cap = min(e.max_ttl_seconds or policy.max_ttl_seconds for e in explanations)
    ttl = body.ttl_seconds if body.ttl_seconds is not None else min(policy.default_ttl_seconds, cap)
    if ttl > cap:
        raise _refuse(
            state,
            principal,
            "ttl_exceeds_cap",
            f"a TTL of {ttl} s is above the policy cap of {cap} s for this request",
            f"ask for --ttl {cap}s or less",
            body,
        )
    now = state.now()
    expires_at = now + ttl
    ops = frozenset(body.operations)
    with state.store.session() as session:
        if needs_topics:
            topics_txt = ", ".join(sorted(needs_topics))
            what = "/".join(sorted(o.value for o in needs_ops))
            if body.approval_id is None:
                raise _refuse(
                    state,
                    principal,
                    "approval_required",
                    f"{what}s to {topics_txt} need an approval",
                    _approval_hint(sorted(needs_topics), needs_ops),
                    body,
                )
            check = state.approval_gate.check(
                session,
                approval_id=body.approval_id,
                subject=principal.subject,
                cluster=cluster.name,
                topics=tuple(body.topics),
                operations=ops,
                now=now,
            )
            if not check.allowed:
                raise _refuse(
                    state,
                    principal,
                    "approval_refused",
                    f"approval {body.approval_id} does not allow this grant: {check.reason}",
                    _approval_hint(sorted(needs_topics), needs_ops),
                    body,
                )
            if check.window_end is not None:
                expires_at = min(expires_at, check.window_end)
                if expires_at <= now:
                    raise _refuse(
                        state,
                        principal,
                        "approval_refused",
                        f"approval {body.approval_id} window has ended",
                        _approval_hint(sorted(needs_topics), needs_ops),
                        body,
                    )
        groups = sorted({g for e in explanations for g in e.groups}) or ["*"]
        grant = Grant(
            grant_id=str(uuid.uuid4()),
            subject=principal.subject,
            cluster=cluster.settings(),
            topics=tuple(dict.fromkeys(body.topics)),
            operations=ops,
            not_before=int(now),
            expires_at=int(expires_at),
            topic_classes=policy.class_map(),
            masking=policy.masking_for(body.topics),
            approval_id=body.approval_id if needs_topics else None,
            groups=tuple(groups),
        )
        claims = grant.to_claims()
        claims.update({"iss": state.config.issuer_url, "aud": cluster.audience, "iat": int(now)})
        token, kid = state.keys.sign(claims)
        session.add(
            GrantRecord(
                id=grant.grant_id,
                subject=principal.subject,
                cluster=cluster.name,
                topics=list(grant.topics),
                operations=sorted(o.value for o in ops),
                reason=body.reason,
                approval_id=grant.approval_id,
                kid=kid,
                issued_at=dt.datetime.fromtimestamp(int(now), dt.UTC),
                expires_at=dt.datetime.fromtimestamp(grant.expires_at, dt.UTC),
            )
        )
        state.recorder.record(
            session,
            kind="grant",
            subject=principal.subject,
            outcome="issued",
            detail={
                "grant_id": grant.grant_id,
                "cluster": cluster.name,
                "topics": list(grant.topics),
                "operations": sorted(o.value for o in ops),
                "approval_id": grant.approval_id,
                "expires_at": iso(grant.expires_at),
            },
        )
    return GrantIssued(
        grant_id=grant.grant_id, token=token, expires_at=iso(grant.expires_at), claims=claims
    )


def _summary(row: GrantRecord, now: float) -> GrantSummary:
    expires = as_utc(row.expires_at).timestamp()
    return GrantSummary(
        grant_id=row.id,
        cluster=row.cluster,
        topics=list(row.topics),
        operations=list(row.operations),
        reason=row.reason,
        approval_id=row.approval_id,
        issued_at=iso(row.issued_at),
        expires_at=iso(row.expires_at),
        revoked=row.revoked_at is not None,
        active=row.revoked_at is None and expires > now,
    )


@router.get("", response_model=list[GrantSummary])
def list_grants(
    principal: CurrentPrincipal, state: State, active: bool = False
) -> list[GrantSummary]:
    """The caller's grants, newest first (`?active=true` for live ones only)."""
    now = state.now()
    with state.store.session() as session:
        rows = session.scalars(
            select(GrantRecord)
            .where(GrantRecord.subject == principal.subject)
            .order_by(GrantRecord.issued_at.desc())
            .limit(500)
        ).all()
        out = [_summary(r, now) for r in rows]
    return [g for g in out if g.active] if active else out


def _owned(state: ServerState, grant_id: str, subject: str) -> GrantRecord:
    with state.store.session() as session:
        row = session.get(GrantRecord, grant_id)
    if row is None or row.subject != subject:
        raise ApiError(404, "unknown_grant", f"no grant {grant_id} of yours", "streamctl grant ls")
    return row


def status_caller(request: Request, state: State) -> str:
    """The subject asking for a grant's status: an access token, or the grant token itself."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        policy = state.policy.current()
        jwks = state.keys.jwks()
        for cluster in policy.clusters.values():
            try:
                grant = verify_grant_token(token, jwks, state.config.issuer_url, cluster.audience)
            except TokenError:
                continue
            return grant.subject
    return authenticate(state, token).subject if token else _no_token()


def _no_token() -> str:
    raise ApiError(401, "not_authenticated", "no bearer token: log in first", "streamctl login")


@router.get("/{grant_id}/status", response_model=GrantStatus)
def grant_status(
    grant_id: GrantId, state: State, subject: Annotated[str, Depends(status_caller)]
) -> GrantStatus:
    """Whether a grant is still active; the tunnel polls it to learn of a revocation."""
    row = _owned(state, grant_id, subject)
    s = _summary(row, state.now())
    return GrantStatus(
        grant_id=s.grant_id, active=s.active, revoked=s.revoked, expires_at=s.expires_at
    )


@router.post("/{grant_id}/revoke", response_model=GrantStatus)
def revoke_grant(grant_id: GrantId, principal: CurrentPrincipal, state: State) -> GrantStatus:
    """Revoke one of the caller's grants (idempotent)."""
    _owned(state, grant_id, principal.subject)
    with state.store.session() as session:
        row = session.get(GrantRecord, grant_id, with_for_update=True)
        assert row is not None
        if row.revoked_at is None:
            row.revoked_at = dt.datetime.fromtimestamp(state.now(), dt.UTC)
            row.revoked_by = principal.subject
            state.recorder.record(
                session,
                kind="grant",
                subject=principal.subject,
                outcome="revoked",
                detail={"grant_id": grant_id},
            )
        s = _summary(row, state.now())
    return GrantStatus(
        grant_id=s.grant_id, active=s.active, revoked=s.revoked, expires_at=s.expires_at
    )
