"""The policy decision on request summaries: operation kinds, guardrails, lifetime, groups."""

from __future__ import annotations

import time
import uuid
from types import MappingProxyType

import pytest

from streamctl.kafka import error_codes
from streamctl.kafka.apis import ApiKey
from streamctl.kafka.operations import OperationKind
from streamctl.kafka.summary import RESOURCE_BROKER, RESOURCE_GROUP, RequestSummary
from streamctl.policy.decision import Verdict, decide
from tests.policy.grants import make_grant

ORDERS_ID = uuid.uuid4()


def names(topic_id: uuid.UUID) -> str | None:
    return {ORDERS_ID: "orders"}.get(topic_id)


def summary(api_key: int, kind: OperationKind, **kw: object) -> RequestSummary:
    kw.setdefault("partitions", MappingProxyType({}))
    return RequestSummary(
        api_key=api_key, api_version=0, correlation_id=1, client_id="t", kind=kind, **kw  # type: ignore[arg-type]
    )


def produce(*topics: str, txn: str | None = None) -> RequestSummary:
    return summary(
        ApiKey.PRODUCE,
        OperationKind.WRITE,
        topics=topics,
        transactional_id=txn,
        transactional_ids=(txn,) if txn else (),
    )


def fetch(*topics: str) -> RequestSummary:
    return summary(ApiKey.FETCH, OperationKind.READ, topics=topics)


def check(verdict: Verdict, code: int, *words: str) -> None:
    assert not verdict.allowed, verdict
    assert verdict.error_code == code, verdict
    for word in words:
        assert word in verdict.reason, verdict


def test_read_grant_allows_fetch_and_refuses_produce() -> None:
    grant = make_grant(ops=("read",))
    assert decide(fetch("orders"), grant, time.time(), names).allowed
    check(decide(produce("orders"), grant, time.time(), names), 29, "write", "orders")


@pytest.mark.parametrize(
    "api_key",
    [ApiKey.LIST_OFFSETS, ApiKey.OFFSET_COMMIT, ApiKey.OFFSET_FETCH],
)
def test_read_covers_offsets(api_key: int) -> None:
    s = summary(api_key, OperationKind.READ, topics=("orders",), groups=("g1",), group="g1")
    assert decide(s, make_grant(ops=("read",)), time.time(), names).allowed
    check(decide(s, make_grant(ops=("write",)), time.time(), names), 29)


@pytest.mark.parametrize(
    "api_key", [ApiKey.JOIN_GROUP, ApiKey.SYNC_GROUP, ApiKey.HEARTBEAT, ApiKey.LEAVE_GROUP]
)
def test_group_membership_is_read(api_key: int) -> None:
    s = summary(api_key, OperationKind.READ, groups=("g1",), group="g1")
    assert decide(s, make_grant(ops=("read",)), time.time(), names).allowed
    check(decide(s, make_grant(ops=("write",)), time.time(), names), 30, "read")


def test_group_outside_grant_is_refused_with_30() -> None:
    grant = make_grant(ops=("read",), groups=("team-*",))
    inside = summary(ApiKey.JOIN_GROUP, OperationKind.READ, groups=("team-a",), group="team-a")
    outside = summary(ApiKey.JOIN_GROUP, OperationKind.READ, groups=("other",), group="other")
    assert decide(inside, grant, time.time(), names).allowed
    check(decide(outside, grant, time.time(), names), 30, "other")
    commit = summary(
        ApiKey.OFFSET_COMMIT, OperationKind.READ, topics=("orders",), groups=("other",)
    )
    check(decide(commit, grant, time.time(), names), 30)


@pytest.mark.parametrize(
    "api_key",
    [ApiKey.INIT_PRODUCER_ID, ApiKey.END_TXN, ApiKey.ADD_OFFSETS_TO_TXN],
)
def test_write_covers_transactions(api_key: int) -> None:
    s = summary(api_key, OperationKind.WRITE, transactional_ids=("tx-1",), transactional_id="tx-1")
    assert decide(s, make_grant(ops=("write",)), time.time(), names).allowed
    check(decide(s, make_grant(ops=("read",)), time.time(), names), 53)


def test_transactional_id_outside_grant_is_refused() -> None:
    grant = make_grant(ops=("write",), groups=("app-*",))
    check(decide(produce("orders", txn="evil"), grant, time.time(), names), 53, "evil")
    assert decide(produce("orders", txn="app-1"), grant, time.time(), names).allowed


def test_idempotent_producer_init_needs_write() -> None:
    s = summary(ApiKey.INIT_PRODUCER_ID, OperationKind.WRITE)
    assert decide(s, make_grant(ops=("write",)), time.time(), names).allowed
    check(decide(s, make_grant(ops=("read",)), time.time(), names), 31)


def test_ungranted_topic_is_refused_with_29() -> None:
    grant = make_grant(topics=("orders", "shop.*"), ops=("read", "write"))
    assert decide(fetch("shop.carts"), grant, time.time(), names).allowed
    check(decide(fetch("orders", "payroll"), grant, time.time(), names), 29, "payroll", "outside")


def test_topic_ids_are_resolved_and_unknown_ids_refused() -> None:
    grant = make_grant(ops=("read",))
    by_id = summary(ApiKey.FETCH, OperationKind.READ, topic_ids=(ORDERS_ID,))
    assert decide(by_id, grant, time.time(), names).allowed
    stranger = summary(ApiKey.FETCH, OperationKind.READ, topic_ids=(uuid.uuid4(),))
    assert not decide(stranger, grant, time.time(), names).allowed
    other = make_grant(topics=("payments",), ops=("read",))
    check(decide(by_id, other, time.time(), names), 29, "orders")


def test_immutable_topic_is_never_deleted_altered_or_truncated() -> None:
    grant = make_grant(
        topics=("audit",),
        ops=("read", "write", "create", "delete", "alter", "describe"),
        classes={"audit": ("immutable",)},
    )
    for api_key, kind in [
        (ApiKey.DELETE_TOPICS, OperationKind.DELETE),
        (ApiKey.DELETE_RECORDS, OperationKind.DELETE),
        (ApiKey.ALTER_CONFIGS, OperationKind.ALTER),
        (ApiKey.INCREMENTAL_ALTER_CONFIGS, OperationKind.ALTER),
        (ApiKey.CREATE_PARTITIONS, OperationKind.CREATE),
    ]:
        check(decide(summary(api_key, kind, topics=("audit",)), grant, time.time(), names), 44, "immutable")
    # Reading and writing an immutable topic stays allowed.
    assert decide(fetch("audit"), grant, time.time(), names).allowed
    assert decide(produce("audit"), grant, time.time(), names).allowed


def test_high_value_write_needs_approval_id() -> None:
    classes = {"pay*": ("high-value",)}
    without = make_grant(topics=("payments",), ops=("read", "write"), classes=classes)
    check(
        decide(produce("payments"), without, time.time(), names),
        29,
        "streamctl request-approval payments --write",
    )
    add = summary(
        ApiKey.ADD_PARTITIONS_TO_TXN, OperationKind.WRITE, topics=("payments",),
        transactional_ids=("t",),
    )
    check(decide(add, without, time.time(), names), 29, "approval")
    assert decide(fetch("payments"), without, time.time(), names).allowed
    approved = make_grant(
        topics=("payments",), ops=("write",), classes=classes, approval_id="apr-1"
    )
    assert decide(produce("payments"), approved, time.time(), names).allowed


def test_create_needs_create() -> None:
    s = summary(ApiKey.CREATE_TOPICS, OperationKind.CREATE, topics=("orders",))
    check(decide(s, make_grant(ops=("read", "write")), time.time(), names), 29, "create")
    assert decide(s, make_grant(ops=("create",)), time.time(), names).allowed


def test_delete_needs_delete() -> None:
    s = summary(ApiKey.DELETE_TOPICS, OperationKind.DELETE, topics=("orders",))
    check(decide(s, make_grant(ops=("read", "write", "create")), time.time(), names), 29, "delete")
    assert decide(s, make_grant(ops=("delete",)), time.time(), names).allowed


def test_describe_is_implied_by_read_but_not_by_create() -> None:
    s = summary(ApiKey.DESCRIBE_CONFIGS, OperationKind.DESCRIBE, topics=("orders",))
    assert decide(s, make_grant(ops=("read",)), time.time(), names).allowed
    assert decide(s, make_grant(ops=("describe",)), time.time(), names).allowed
    check(decide(s, make_grant(ops=("create",)), time.time(), names), 29)


def test_cluster_operations_are_refused_with_31() -> None:
    grant = make_grant(ops=("read", "write", "create", "delete", "alter", "describe"))
    broker_cfg = summary(
        ApiKey.INCREMENTAL_ALTER_CONFIGS, OperationKind.ALTER, resources=((RESOURCE_BROKER, "1"),)
    )
    check(decide(broker_cfg, grant, time.time(), names), 31, "cluster")
    describe_broker = summary(
        ApiKey.DESCRIBE_CONFIGS, OperationKind.DESCRIBE, resources=((RESOURCE_BROKER, "1"),)
    )
    check(decide(describe_broker, grant, time.time(), names), 31)
    group_cfg = summary(
        ApiKey.DESCRIBE_CONFIGS, OperationKind.DESCRIBE,
        resources=((RESOURCE_GROUP, "g"),), groups=("g",),
    )
    assert decide(group_cfg, grant, time.time(), names).allowed
    # Some cluster-kind API outside the basics (e.g. a future admin call) is refused.
    check(decide(summary(999, OperationKind.CLUSTER), grant, time.time(), names), 31)


def test_cluster_basics_are_allowed() -> None:
    grant = make_grant(ops=("read",))
    for api_key in (ApiKey.API_VERSIONS, ApiKey.METADATA, ApiKey.DESCRIBE_CLUSTER):
        assert decide(summary(api_key, OperationKind.CLUSTER), grant, time.time(), names).allowed


def test_client_sasl_is_refused_locally() -> None:
    grant = make_grant(ops=("read",))
    v = decide(summary(ApiKey.SASL_HANDSHAKE, OperationKind.CLUSTER), grant, time.time(), names)
    check(v, error_codes.UNSUPPORTED_SASL_MECHANISM, "PLAINTEXT")


def test_find_coordinator() -> None:
    group = summary(ApiKey.FIND_COORDINATOR, OperationKind.GROUP, groups=("g",), group="g")
    txn = summary(
        ApiKey.FIND_COORDINATOR, OperationKind.WRITE, transactional_ids=("t",), transactional_id="t"
    )
    assert decide(group, make_grant(ops=("read",)), time.time(), names).allowed
    check(decide(group, make_grant(ops=("create",)), time.time(), names), 30)
    check(decide(group, make_grant(ops=("read",), groups=("x",)), time.time(), names), 30)
    assert decide(txn, make_grant(ops=("write",)), time.time(), names).allowed
    check(decide(txn, make_grant(ops=("read",)), time.time(), names), 53)


def test_expired_or_not_yet_valid_grant_refuses_everything_but_api_versions() -> None:
    grant = make_grant(ops=("read",), ttl=60)
    later = grant.expires_at + 1
    check(decide(fetch("orders"), grant, later, names), 29, "expired", "streamctl connect")
    check(decide(summary(ApiKey.METADATA, OperationKind.CLUSTER), grant, later, names), 31)
    api_versions = summary(ApiKey.API_VERSIONS, OperationKind.CLUSTER)
    assert decide(api_versions, grant, later, names).allowed
    check(decide(fetch("orders"), grant, grant.not_before - 10, names), 29, "not valid before")


def test_verdict_constructors() -> None:
    assert Verdict.allow("x") == Verdict(True, 0, "x")
    assert Verdict.refuse(29, "no") == Verdict(False, 29, "no")
