"""The rules of just-in-time approvals, as pure functions over the policy and plain values.

Who may review what, how many reviews approve, how long a request stays pending, and
whether an approval covers a grant request: everything the approvals endpoints and the
grant hook decide, with no database or HTTP here, so each rule is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streamctl.kafka.operations import GRANTABLE, OperationKind
from streamctl.policy.document import PolicyDocument
from streamctl.policy.grant import TopicClass

#: Pending requests expire after this long unless the policy says otherwise.
DEFAULT_PENDING_TTL_SECONDS = 3600


class ApprovalRuleError(Exception):
    """A request or review breaks an approval rule; `code` is the API's error code."""

    def __init__(self, code: str, message: str, status: int = 403, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.hint = hint


@dataclass(frozen=True)
class Requirements:
    """What the policy asks of an approval for some topics: approvers, threshold, limits."""

    classes: tuple[TopicClass, ...]
    approver_roles: Mapping[str, tuple[str, ...]]  # class -> roles, one of which per class
    threshold: int
    reason_required: bool
    pending_ttl_seconds: int
    max_window_seconds: int


def requirements_for(policy: PolicyDocument, topics: Iterable[str]) -> Requirements:
    """Combine the approval settings of every class the topics belong to (strictest wins)."""
    classes: set[TopicClass] = set()
    for topic in topics:
        classes |= {c for c in policy.classes_of(topic) if c in policy.approvals}
    if not classes:
        raise ApprovalRuleError(
            "approval_not_applicable",
            "none of these topics is in a class that takes approvals "
            f"(classes with approvers: {', '.join(sorted(c.value for c in policy.approvals))})",
            status=400,
        )
    settings = [policy.approvals[c] for c in sorted(classes)]
    return Requirements(
        classes=tuple(sorted(classes)),
        approver_roles={s.topic_class.value: tuple(s.approver_roles) for s in settings},
        threshold=max(s.threshold for s in settings),
        reason_required=any(s.reason_required for s in settings) or policy.reason_required,
        pending_ttl_seconds=min(s.pending_ttl_seconds for s in settings),
        max_window_seconds=min(s.max_window_seconds for s in settings),
    )


def check_request(
    policy: PolicyDocument,
    *,
    requester: str,
    requester_roles: Sequence[str],
    topics: Sequence[str],
    operations: Sequence[str],
    duration_seconds: int,
    reason: str,
) -> Requirements:
    """Validate a new approval request; the requester must be able to use what they ask for."""
    if not topics:
        raise ApprovalRuleError("invalid_request", "name at least one topic", status=422)
    if not operations:
        raise ApprovalRuleError("invalid_request", "name at least one operation", status=422)
    for op in operations:
        try:
            kind = OperationKind(op)
        except ValueError:
            kind = None
        if kind is None or kind not in GRANTABLE:
            grantable = ", ".join(sorted(o.value for o in GRANTABLE))
            raise ApprovalRuleError(
                "invalid_request", f"unknown operation {op!r} (grantable: {grantable})", 422
            )
    if duration_seconds <= 0:
        raise ApprovalRuleError("invalid_request", "duration_seconds must be positive", 422)
    req = requirements_for(policy, topics)
    if duration_seconds > req.max_window_seconds:
        raise ApprovalRuleError(
            "window_too_long",
            f"an approval window may last at most {req.max_window_seconds} s for "
            f"{', '.join(c.value for c in req.classes)} topics, {duration_seconds} s asked",
            status=422,
        )
    if req.reason_required and not reason.strip():
        raise ApprovalRuleError(
            "reason_required",
            "the policy requires a reason for this approval request",
            422,
            hint="add --reason '...'",
        )
    for topic in topics:
        for op in operations:
            why = policy.explain(requester, topic, op, requester_roles)
            if not why.allowed:
                raise ApprovalRuleError(
                    "not_requestable",
                    f"{requester} could not use an approval for {op} on {topic}: {why.reason}",
                )
    return req


def check_review(
    *,
    requester: str,
    reviewer: str,
    reviewer_roles: Iterable[str],
    approver_roles: Mapping[str, Sequence[str]],
    status: str,
    earlier_reviewers: Iterable[str],
    decision: str,
    reason: str,
    reason_required: bool,
) -> None:
    """Refuse a review that breaks segregation of duties; return quietly when it may count."""
    if decision not in ("approve", "deny"):
        raise ApprovalRuleError("invalid_request", "decision must be approve or deny", 422)
    if reviewer == requester:
        raise ApprovalRuleError(
            "self_approval",
            f"{reviewer} requested this approval and can never review it",
            hint="ask someone holding an approver role",
        )
    held = set(reviewer_roles)
    for topic_class, roles in approver_roles.items():
        if not held & set(roles):
            raise ApprovalRuleError(
                "not_an_approver",
                f"{reviewer} does not hold an approver role for {topic_class} topics "
                f"(needs one of: {', '.join(roles)})",
            )
    if status != "pending":
        raise ApprovalRuleError(
            "not_pending", f"this approval is {status}; only pending requests are reviewed", 409
        )
    if reviewer in set(earlier_reviewers):
        raise ApprovalRuleError(
            "already_reviewed",
            f"{reviewer} already reviewed this request; a second review does not count again",
            409,
        )
    if (decision == "deny" or reason_required) and not reason.strip():
        raise ApprovalRuleError(
            "reason_required",
            "a denial needs a reason" if decision == "deny" else "the policy requires a reason",
            422,
            hint="add --reason '...'",
        )


def tally(decisions: Iterable[tuple[str, str]], threshold: int) -> str:
    """The status after these (reviewer, decision) pairs: one denial denies; N distinct approve."""
    approvers: set[str] = set()
    for reviewer, decision in decisions:
        if decision == "deny":
            return "denied"
        approvers.add(reviewer)
    return "approved" if len(approvers) >= threshold else "pending"


def effective_status(status: str, now: float, pending_until: float, window_end: float) -> str:
    """Stored status adjusted for time: a pending request or a used-up window is expired."""
    if status == "pending" and now >= pending_until:
        return "expired"
    if status == "approved" and now >= window_end:
        return "expired"
    return status


@dataclass(frozen=True)
class ApprovalFacts:
    """What a stored approval says, as the grant check needs it."""

    approval_id: str
    requester: str
    status: str
    topics: tuple[str, ...]
    operations: frozenset[str]
    window_start: float
    window_end: float
    pending_until: float


def check_use(
    approval: ApprovalFacts,
    *,
    subject: str,
    topics: Iterable[str],
    operations: Iterable[str],
    now: float,
) -> str:
    """Why the approval cannot back this grant request, or "" when it can."""
    if approval.requester != subject:
        return f"approval {approval.approval_id} was requested by someone else"
    status = effective_status(approval.status, now, approval.pending_until, approval.window_end)
    if status == "expired" and approval.status == "approved":
        return f"approval {approval.approval_id} window ended; request a new approval"
    if status != "approved":
        return f"approval {approval.approval_id} is {status}, not approved"
    if now < approval.window_start:
        return f"approval {approval.approval_id} window has not started yet"
    extra_topics = sorted(set(topics) - set(approval.topics))
    if extra_topics:
        return (
            f"approval {approval.approval_id} covers {', '.join(approval.topics)}, "
            f"not {', '.join(extra_topics)}"
        )
    extra_ops = sorted(set(operations) - approval.operations)
    if extra_ops:
        return (
            f"approval {approval.approval_id} covers {', '.join(sorted(approval.operations))}, "
            f"not {', '.join(extra_ops)}"
        )
    return ""
