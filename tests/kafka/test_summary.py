"""Request summaries: kind, topics, partitions, groups and transactional ids per API."""

from __future__ import annotations

import uuid

import pytest

from streamctl.kafka.apis import ApiKey
from streamctl.kafka.errors import ClientProtocolError
from streamctl.kafka.headers import encode_request_header
from streamctl.kafka.operations import OperationKind
from streamctl.kafka.summary import EXTRACTORS, summarize
from tests.kafka.builders import request_frame

K = ApiKey
TID = uuid.UUID("11111111-2222-3333-4444-555555555555")


def test_every_issue_api_has_an_extractor() -> None:
    assert set(EXTRACTORS) == {int(k) for k in ApiKey}


def test_produce_by_name() -> None:
    s = summarize(request_frame(K.PRODUCE, 9, correlation_id=42, client_id="app",
        transactional_id="tx1", acks=-1, timeout_ms=1000,
        topic_data=[{"name": "orders", "partition_data": [{"index": 0, "records": b""}, {"index": 2, "records": None}]}]))
    assert (s.api_key, s.api_version, s.correlation_id, s.client_id) == (0, 9, 42, "app")
    assert s.kind is OperationKind.WRITE
    assert s.topics == ("orders",)
    assert dict(s.partitions) == {"orders": (0, 2)}
    assert s.transactional_id == "tx1"
    assert s.expects_response


def test_produce_acks_zero_expects_no_response() -> None:
    s = summarize(request_frame(K.PRODUCE, 3, acks=0, timeout_ms=1, topic_data=[]))
    assert not s.expects_response


def test_produce_v13_names_topics_by_id() -> None:
    s = summarize(request_frame(K.PRODUCE, 13, acks=1, timeout_ms=1,
        topic_data=[{"topic_id": TID, "partition_data": [{"index": 1, "records": b""}]}]))
    assert s.topics == ()
    assert s.topic_ids == (TID,)
    assert dict(s.partitions) == {str(TID): (1,)}


@pytest.mark.parametrize("version", [4, 12, 13, 17])
def test_fetch(version: int) -> None:
    topic = {"topic": "logs"} if version <= 12 else {"topic_id": TID}
    topic["partitions"] = [{"partition": 3, "fetch_offset": 0}]
    s = summarize(request_frame(K.FETCH, version, topics=[topic]))
    assert s.kind is OperationKind.READ
    if version <= 12:
        assert s.topics == ("logs",)
        assert dict(s.partitions) == {"logs": (3,)}
    else:
        assert s.topic_ids == (TID,)


@pytest.mark.parametrize(("version", "topics", "all_topics"), [
    (0, [], True), (1, None, True), (4, [{"name": "a"}], False), (12, None, True),
])
def test_metadata(version: int, topics: list[dict[str, str]] | None, all_topics: bool) -> None:
    s = summarize(request_frame(K.METADATA, version, topics=topics, allow_auto_topic_creation=False))
    assert s.kind is OperationKind.CLUSTER
    assert s.all_topics is all_topics
    assert s.topics == tuple(t["name"] for t in topics or ())
    assert not s.allow_auto_topic_creation


def test_metadata_auto_create_is_reported() -> None:
    s = summarize(request_frame(K.METADATA, 9, topics=[{"name": "new"}], allow_auto_topic_creation=True))
    assert s.allow_auto_topic_creation


def test_list_offsets() -> None:
    s = summarize(request_frame(K.LIST_OFFSETS, 7, topics=[{"name": "t", "partitions": [{"partition_index": 0}, {"partition_index": 1}]}]))
    assert (s.kind, s.topics, dict(s.partitions)) == (OperationKind.READ, ("t",), {"t": (0, 1)})


def test_offset_commit_and_fetch() -> None:
    s = summarize(request_frame(K.OFFSET_COMMIT, 8, group_id="g", topics=[{"name": "t", "partitions": [{"partition_index": 4}]}]))
    assert (s.kind, s.group, dict(s.partitions)) == (OperationKind.READ, "g", {"t": (4,)})
    s = summarize(request_frame(K.OFFSET_FETCH, 7, group_id="g", topics=None))
    assert (s.group, s.all_topics) == ("g", True)
    s = summarize(request_frame(K.OFFSET_FETCH, 8, groups=[
        {"group_id": "g1", "topics": [{"name": "t", "partition_indexes": [0]}]},
        {"group_id": "g2", "topics": [{"name": "u", "partition_indexes": [1]}]}]))
    assert (s.group, s.groups, s.topics) == ("g1", ("g1", "g2"), ("t", "u"))


def test_find_coordinator() -> None:
    s = summarize(request_frame(K.FIND_COORDINATOR, 2, key="grp", key_type=0))
    assert (s.kind, s.group) == (OperationKind.GROUP, "grp")
    s = summarize(request_frame(K.FIND_COORDINATOR, 4, key_type=1, coordinator_keys=["tx1", "tx2"]))
    assert (s.kind, s.transactional_id, s.transactional_ids) == (OperationKind.WRITE, "tx1", ("tx1", "tx2"))


@pytest.mark.parametrize(("key", "version", "values"), [
    (K.JOIN_GROUP, 5, {"group_id": "g", "member_id": "", "protocol_type": "consumer", "protocols": []}),
    (K.HEARTBEAT, 4, {"group_id": "g", "member_id": "m"}),
    (K.LEAVE_GROUP, 3, {"group_id": "g", "members": [{"member_id": "m"}]}),
    (K.SYNC_GROUP, 5, {"group_id": "g", "member_id": "m", "assignments": []}),
])
def test_group_membership_is_read(key: int, version: int, values: dict[str, object]) -> None:
    s = summarize(request_frame(key, version, **values))
    assert (s.kind, s.group) == (OperationKind.READ, "g")


def test_group_administration() -> None:
    s = summarize(request_frame(K.DESCRIBE_GROUPS, 5, groups=["a", "b"]))
    assert (s.kind, s.groups) == (OperationKind.DESCRIBE, ("a", "b"))
    assert summarize(request_frame(K.LIST_GROUPS, 4, states_filter=[])).kind is OperationKind.GROUP
    s = summarize(request_frame(K.DELETE_GROUPS, 2, groups_names=["x"]))
    assert (s.kind, s.group) == (OperationKind.GROUP, "x")
    s = summarize(request_frame(K.OFFSET_DELETE, 0, group_id="g", topics=[{"name": "t", "partitions": [{"partition_index": 2}]}]))
    assert (s.kind, s.group, dict(s.partitions)) == (OperationKind.GROUP, "g", {"t": (2,)})


@pytest.mark.parametrize(("key", "version", "values"), [
    (K.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"}),
    (K.API_VERSIONS, 3, {"client_software_name": "x", "client_software_version": "1"}),
    (K.SASL_AUTHENTICATE, 2, {"auth_bytes": b"\x00u\x00p"}),
    (K.DESCRIBE_CLUSTER, 1, {}),
])
def test_cluster_apis(key: int, version: int, values: dict[str, object]) -> None:
    s = summarize(request_frame(key, version, **values))
    assert s.kind is OperationKind.CLUSTER
    assert s.topics == ()


def test_topic_administration() -> None:
    s = summarize(request_frame(K.CREATE_TOPICS, 5, topics=[{"name": "n", "num_partitions": 1, "replication_factor": 1, "assignments": [], "configs": []}]))
    assert (s.kind, s.topics) == (OperationKind.CREATE, ("n",))
    s = summarize(request_frame(K.CREATE_PARTITIONS, 3, topics=[{"name": "n", "count": 3, "assignments": None}]))
    assert (s.kind, s.topics) == (OperationKind.CREATE, ("n",))
    s = summarize(request_frame(K.DELETE_TOPICS, 4, topic_names=["a", "b"]))
    assert (s.kind, s.topics) == (OperationKind.DELETE, ("a", "b"))
    s = summarize(request_frame(K.DELETE_TOPICS, 6, topics=[{"name": None, "topic_id": TID}, {"name": "c"}]))
    assert (s.topics, s.topic_ids) == (("c",), (TID,))
    s = summarize(request_frame(K.DELETE_RECORDS, 2, topics=[{"name": "a", "partitions": [{"partition_index": 0, "offset": 5}]}]))
    assert (s.kind, dict(s.partitions)) == (OperationKind.DELETE, {"a": (0,)})


def test_transactions() -> None:
    s = summarize(request_frame(K.INIT_PRODUCER_ID, 4, transactional_id="tx"))
    assert (s.kind, s.transactional_id) == (OperationKind.WRITE, "tx")
    assert summarize(request_frame(K.INIT_PRODUCER_ID, 4, transactional_id=None)).transactional_id is None
    s = summarize(request_frame(K.ADD_PARTITIONS_TO_TXN, 3, v3_and_below_transactional_id="tx",
        v3_and_below_topics=[{"name": "t", "partitions": [0, 1]}]))
    assert (s.transactional_id, dict(s.partitions)) == ("tx", {"t": (0, 1)})
    s = summarize(request_frame(K.ADD_PARTITIONS_TO_TXN, 4, transactions=[
        {"transactional_id": "a", "topics": [{"name": "t", "partitions": [0]}]},
        {"transactional_id": "b", "topics": []}]))
    assert s.transactional_ids == ("a", "b")
    s = summarize(request_frame(K.ADD_OFFSETS_TO_TXN, 3, transactional_id="tx", group_id="g"))
    assert (s.kind, s.transactional_id, s.group) == (OperationKind.WRITE, "tx", "g")
    s = summarize(request_frame(K.END_TXN, 3, transactional_id="tx", committed=True))
    assert (s.kind, s.transactional_id) == (OperationKind.WRITE, "tx")
    s = summarize(request_frame(K.TXN_OFFSET_COMMIT, 3, transactional_id="tx", group_id="g",
        topics=[{"name": "t", "partitions": [{"partition_index": 1}]}]))
    assert (s.kind, s.group, dict(s.partitions)) == (OperationKind.WRITE, "g", {"t": (1,)})


def test_configs() -> None:
    s = summarize(request_frame(K.DESCRIBE_CONFIGS, 4, resources=[
        {"resource_type": 2, "resource_name": "t", "configuration_keys": None},
        {"resource_type": 4, "resource_name": "1", "configuration_keys": None}]))
    assert (s.kind, s.topics, s.resources) == (OperationKind.DESCRIBE, ("t",), ((4, "1"),))
    s = summarize(request_frame(K.ALTER_CONFIGS, 2, resources=[{"resource_type": 2, "resource_name": "t", "configs": []}]))
    assert (s.kind, s.topics) == (OperationKind.ALTER, ("t",))
    s = summarize(request_frame(K.INCREMENTAL_ALTER_CONFIGS, 1, resources=[{"resource_type": 2, "resource_name": "t", "configs": []}]))
    assert (s.kind, s.topics) == (OperationKind.ALTER, ("t",))


def test_offset_for_leader_epoch_and_describe_producers() -> None:
    s = summarize(request_frame(K.OFFSET_FOR_LEADER_EPOCH, 4, topics=[{"topic": "t", "partitions": [{"partition": 0}]}]))
    assert (s.kind, dict(s.partitions)) == (OperationKind.READ, {"t": (0,)})
    s = summarize(request_frame(K.DESCRIBE_PRODUCERS, 0, topics=[{"name": "t", "partition_indexes": [0, 1]}]))
    assert (s.kind, dict(s.partitions)) == (OperationKind.DESCRIBE, {"t": (0, 1)})


def test_unknown_api_key_is_a_client_error() -> None:
    frame = encode_request_header(68, 0, 1, "x")[:-0 or None] + b"\x00" * 4
    with pytest.raises(ClientProtocolError, match="does not understand"):
        summarize(frame)
