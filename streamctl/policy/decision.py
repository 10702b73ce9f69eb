"""The per-request authorization decision: allow a request, or refuse it with a Kafka error.

`decide(summary, grant, now, topic_name_of)` is a pure function. It looks only at the
request summary the protocol core extracted and at the grant, and answers with a `Verdict`
the tunnel acts on: forward the frame untouched, or answer locally with the verdict's error
code on everything the request names. The guardrails of topic classes (immutable, high-value)
are checked here too, so no grant can lift them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from streamctl.kafka import error_codes
from streamctl.kafka.apis import ApiKey
from streamctl.kafka.operations import OperationKind
from streamctl.kafka.summary import (
    RESOURCE_BROKER,
    RESOURCE_BROKER_LOGGER,
    RESOURCE_GROUP,
    RequestSummary,
)
from streamctl.policy.grant import Grant, TopicClass

#: Resolves a topic id (Fetch v13+, Produce v13, ...) to its name, None when it is unknown.
TopicNameOf = Callable[[uuid.UUID], str | None]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the tunnel does with one request: forward it, or refuse it with an error code."""

    allowed: bool
    error_code: int
    reason: str

    @classmethod
    def allow(cls, reason: str) -> Verdict:
        """A verdict that forwards the request; the reason goes to the transcript."""
        return cls(True, error_codes.NONE, reason)

    @classmethod
    def refuse(cls, error_code: int, reason: str) -> Verdict:
        """A verdict that answers the request locally with an error the client understands."""
        return cls(False, error_code, reason)


#: APIs every client needs before it can do anything; they reveal nothing a grant guards
#: (Metadata answers are filtered to the grant's topics by the tunnel).
_CLUSTER_BASICS = frozenset({ApiKey.API_VERSIONS, ApiKey.METADATA, ApiKey.DESCRIBE_CLUSTER})

#: Operations that imply describing (as in Kafka's ACLs: READ, WRITE, DELETE, ALTER imply DESCRIBE).
_IMPLIES_DESCRIBE = frozenset(
    {
        OperationKind.READ,
        OperationKind.WRITE,
        OperationKind.DELETE,
        OperationKind.ALTER,
        OperationKind.DESCRIBE,
    }
)

#: The operation each API needs on the topics, groups and transactional ids it names. The
#: summary's kind says the same for most APIs; this table is the policy's own reading of issue 4
#: so a change in how requests are classified cannot silently widen what a grant allows.
_REQUIRED: dict[int, OperationKind] = {
    ApiKey.PRODUCE: OperationKind.WRITE,
    ApiKey.INIT_PRODUCER_ID: OperationKind.WRITE,
    ApiKey.ADD_PARTITIONS_TO_TXN: OperationKind.WRITE,
    ApiKey.ADD_OFFSETS_TO_TXN: OperationKind.WRITE,
    ApiKey.END_TXN: OperationKind.WRITE,
    ApiKey.TXN_OFFSET_COMMIT: OperationKind.WRITE,
    ApiKey.FETCH: OperationKind.READ,
    ApiKey.LIST_OFFSETS: OperationKind.READ,
    ApiKey.OFFSET_FETCH: OperationKind.READ,
    ApiKey.OFFSET_COMMIT: OperationKind.READ,
    ApiKey.JOIN_GROUP: OperationKind.READ,
    ApiKey.SYNC_GROUP: OperationKind.READ,
    ApiKey.HEARTBEAT: OperationKind.READ,
    ApiKey.LEAVE_GROUP: OperationKind.READ,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: OperationKind.DESCRIBE,
    ApiKey.CREATE_TOPICS: OperationKind.CREATE,
    ApiKey.CREATE_PARTITIONS: OperationKind.CREATE,
    ApiKey.DELETE_TOPICS: OperationKind.DELETE,
    ApiKey.DELETE_RECORDS: OperationKind.DELETE,
    ApiKey.DELETE_GROUPS: OperationKind.DELETE,
    ApiKey.OFFSET_DELETE: OperationKind.DELETE,
    ApiKey.ALTER_CONFIGS: OperationKind.ALTER,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: OperationKind.ALTER,
    ApiKey.DESCRIBE_CONFIGS: OperationKind.DESCRIBE,
    ApiKey.DESCRIBE_GROUPS: OperationKind.DESCRIBE,
    ApiKey.DESCRIBE_PRODUCERS: OperationKind.DESCRIBE,
    ApiKey.LIST_GROUPS: OperationKind.DESCRIBE,
}

#: APIs that change or remove a topic's data or shape: refused on immutable topics.
_MUTATES_TOPIC = frozenset(
    {
        ApiKey.DELETE_TOPICS,
        ApiKey.DELETE_RECORDS,
        ApiKey.ALTER_CONFIGS,
        ApiKey.INCREMENTAL_ALTER_CONFIGS,
        ApiKey.CREATE_PARTITIONS,
    }
)

#: APIs that put records into the topics they name: high-value topics need an approval.
_WRITES_RECORDS = frozenset({ApiKey.PRODUCE, ApiKey.ADD_PARTITIONS_TO_TXN})

_SASL = frozenset({ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(set(items)))


def _grants(grant: Grant, needed: OperationKind) -> bool:
    if needed == OperationKind.DESCRIBE:
        return bool(grant.operations & _IMPLIES_DESCRIBE)
    return needed in grant.operations


def _refusal_code(summary: RequestSummary) -> int:
    """The error a client expects for this request when it is refused as a whole."""
    if summary.topics or summary.topic_ids:
        return error_codes.TOPIC_AUTHORIZATION_FAILED
    if summary.transactional_ids:
        return error_codes.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    if summary.groups or summary.api_key == ApiKey.FIND_COORDINATOR:
        return error_codes.GROUP_AUTHORIZATION_FAILED
    return error_codes.CLUSTER_AUTHORIZATION_FAILED


def _resolve_topics(
    summary: RequestSummary, topic_name_of: TopicNameOf
) -> tuple[list[str], list[uuid.UUID]]:
    names = list(summary.topics)
    unknown: list[uuid.UUID] = []
    for topic_id in summary.topic_ids:
        name = topic_name_of(topic_id)
        if name is None:
            unknown.append(topic_id)
        else:
            names.append(name)
    return names, unknown


def _check_lifetime(summary: RequestSummary, grant: Grant, now: float) -> Verdict | None:
    if now >= grant.expires_at:
        return Verdict.refuse(
            _refusal_code(summary),
            f"grant {grant.grant_id} expired at {_when(grant.expires_at)}; "
            "run `streamctl connect` again for a new grant",
        )
    if now < grant.not_before:
        return Verdict.refuse(
            _refusal_code(summary),
            f"grant {grant.grant_id} is not valid before {_when(grant.not_before)}",
        )
    return None


def _check_cluster(summary: RequestSummary) -> Verdict | None:
    """Requests that touch no topic, group or transaction: basics pass, SASL and the rest do not."""
    if summary.api_key in _CLUSTER_BASICS:
        return Verdict.allow(f"{summary.name} is needed by every client")
    if summary.api_key in _SASL:
        code = (
            error_codes.UNSUPPORTED_SASL_MECHANISM
            if summary.api_key == ApiKey.SASL_HANDSHAKE
            else error_codes.ILLEGAL_SASL_STATE
        )
        return Verdict.refuse(
            code,
            "the tunnel authenticates to the cluster itself: connect with "
            "security.protocol=PLAINTEXT and no SASL settings",
        )
    return Verdict.refuse(
        error_codes.CLUSTER_AUTHORIZATION_FAILED,
        f"{summary.name} is a cluster operation, which grants never allow",
    )


def _check_resources(summary: RequestSummary, grant: Grant) -> Verdict | None:
    """Config resources other than topics: broker configs are cluster-wide, groups need a grant."""
    for resource_type, name in summary.resources:
        if resource_type in (RESOURCE_BROKER, RESOURCE_BROKER_LOGGER):
            return Verdict.refuse(
                error_codes.CLUSTER_AUTHORIZATION_FAILED,
                f"{summary.name} on broker {name!r} is a cluster operation, which grants "
                "never allow",
            )
        if resource_type != RESOURCE_GROUP:
            return Verdict.refuse(
                error_codes.CLUSTER_AUTHORIZATION_FAILED,
                f"{summary.name} on resource type {resource_type} ({name!r}) is not allowed",
            )
    return None


def _check_groups(summary: RequestSummary, grant: Grant) -> Verdict | None:
    outside = [g for g in summary.groups if not grant.covers_group(g)]
    if outside:
        return Verdict.refuse(
            error_codes.GROUP_AUTHORIZATION_FAILED,
            f"group {_names(outside)} is outside grant {grant.grant_id}",
        )
    return None


def _check_transactions(summary: RequestSummary, grant: Grant) -> Verdict | None:
    outside = [t for t in summary.transactional_ids if not grant.covers_group(t)]
    if not outside:
        return None
    return Verdict.refuse(
        error_codes.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        f"transactional id {_names(outside)} is outside grant {grant.grant_id}",
    )


def _check_guardrails(summary: RequestSummary, grant: Grant, topics: list[str]) -> Verdict | None:
    """Topic-class rules that hold whatever the grant says."""
    if summary.api_key in _MUTATES_TOPIC:
        immutable = [t for t in topics if TopicClass.IMMUTABLE in grant.classes_of(t)]
        if immutable:
            return Verdict.refuse(
                error_codes.POLICY_VIOLATION,
                f"topic {_names(immutable)} is immutable: it is never deleted, altered or "
                f"truncated ({summary.name} refused whatever the grant says)",
            )
    if summary.api_key in _WRITES_RECORDS and not grant.approval_id:
        high_value = [t for t in topics if TopicClass.HIGH_VALUE in grant.classes_of(t)]
        if high_value:
            names = _names(high_value)
            return Verdict.refuse(
                error_codes.TOPIC_AUTHORIZATION_FAILED,
                f"writes to high-value topic {names} need an approval: "
                f"streamctl request-approval {' '.join(sorted(set(high_value)))} --write",
            )
    return None


def decide(
    summary: RequestSummary, grant: Grant, now: float, topic_name_of: TopicNameOf
) -> Verdict:
    """Decide whether the grant allows this request at time `now` (POSIX seconds)."""
    if summary.api_key == ApiKey.API_VERSIONS:
        # Always answered, even on an expired grant: clients need it to read any other error.
        return Verdict.allow("ApiVersions is needed by every client")
    expired = _check_lifetime(summary, grant, now)
    if expired is not None:
        return expired
    needed = _REQUIRED.get(summary.api_key)
    if needed is None and summary.api_key != ApiKey.FIND_COORDINATOR:
        cluster = _check_cluster(summary)
        if cluster is not None:
            return cluster
    for check in (_check_resources, _check_groups, _check_transactions):
        refused = check(summary, grant)
        if refused is not None:
            return refused

    topics, unknown_ids = _resolve_topics(summary, topic_name_of)
    if unknown_ids:
        return Verdict.refuse(
            error_codes.UNKNOWN_TOPIC_ID,
            f"topic id {', '.join(str(i) for i in unknown_ids)} is not known to the tunnel; "
            "refresh metadata",
        )
    outside = [t for t in topics if not grant.covers_topic(t)]
    if outside:
        return Verdict.refuse(
            error_codes.TOPIC_AUTHORIZATION_FAILED,
            f"topic {_names(outside)} is outside grant {grant.grant_id}",
        )
    guardrail = _check_guardrails(summary, grant, topics)
    if guardrail is not None:
        return guardrail

    if summary.api_key == ApiKey.FIND_COORDINATOR:
        return _decide_find_coordinator(summary, grant)
    assert needed is not None
    if not _grants(grant, needed):
        what = f"topic {_names(topics)}" if topics else "this request"
        return Verdict.refuse(
            _refusal_code(summary),
            f"{summary.name} needs {needed.value} on {what}; grant {grant.grant_id} allows "
            f"{_names(op.value for op in grant.operations) or 'nothing'}",
        )
    on = f" on {_names(topics)}" if topics else ""
    return Verdict.allow(f"{needed.value}{on} allowed by grant {grant.grant_id}")


def _decide_find_coordinator(summary: RequestSummary, grant: Grant) -> Verdict:
    """Locating a coordinator: groups for anyone who may use one, transactions for writers."""
    if summary.transactional_ids:
        if OperationKind.WRITE not in grant.operations:
            return Verdict.refuse(
                error_codes.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                f"transactions need write; grant {grant.grant_id} does not allow it",
            )
        return Verdict.allow(f"transaction coordinator lookup allowed by grant {grant.grant_id}")
    if not grant.operations & _IMPLIES_DESCRIBE:
        return Verdict.refuse(
            error_codes.GROUP_AUTHORIZATION_FAILED,
            f"group coordinator lookup needs read or describe; grant {grant.grant_id} allows "
            "neither",
        )
    return Verdict.allow(f"group coordinator lookup allowed by grant {grant.grant_id}")
