"""What a request asks for, in the terms a policy decides on: kind, topics, partitions, group.

`summarize(frame)` decodes only the request header and body of the APIs in `apis.ApiKey` and
boils them down to a `RequestSummary`; it never changes the frame, which the tunnel forwards
byte for byte when the policy allows it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from streamctl.kafka.apis import ApiKey, api_name
from streamctl.kafka.errors import ClientProtocolError
from streamctl.kafka.headers import RequestHeader, parse_request_header
from streamctl.kafka.messages import Message, decode_request
from streamctl.kafka.operations import OperationKind

#: DescribeConfigs / AlterConfigs resource types (org.apache.kafka.common.config.ConfigResource).
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_BROKER_LOGGER = 8
RESOURCE_GROUP = 32

#: FindCoordinator key types.
COORDINATOR_GROUP = 0
COORDINATOR_TRANSACTION = 1


def _empty_partitions() -> Mapping[str, tuple[int, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One request, reduced to what authorizing it needs."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    kind: OperationKind
    topics: tuple[str, ...] = ()
    topic_ids: tuple[uuid.UUID, ...] = ()
    #: topic name (or str(topic id) for id-based requests) -> partitions named for it.
    partitions: Mapping[str, tuple[int, ...]] = field(default_factory=_empty_partitions)
    #: The consumer group the request acts on; the first one when it names several.
    group: str | None = None
    transactional_id: str | None = None
    #: False only for Produce with acks=0: the broker sends no response, nor may the tunnel.
    expects_response: bool = True
    #: True when the request asks for every topic (Metadata all-topics, OffsetFetch all-topics).
    all_topics: bool = False
    #: Every group named (DescribeGroups, DeleteGroups, batched OffsetFetch / FindCoordinator).
    groups: tuple[str, ...] = ()
    #: Every transactional id named (batched FindCoordinator, AddPartitionsToTxn v4+).
    transactional_ids: tuple[str, ...] = ()
    #: Non-topic config resources as (resource type, name), e.g. (4, "1") for broker 1.
    resources: tuple[tuple[int, str], ...] = ()
    #: Metadata: the client lets the broker create the topics it names.
    allow_auto_topic_creation: bool = False

    @property
    def name(self) -> str:
        """The API's protocol name, for logs and transcripts."""
        return api_name(self.api_key)


class _Collector:
    """Accumulates topics, ids and partitions in request order, without duplicates."""

    def __init__(self) -> None:
        self.topics: dict[str, None] = {}
        self.topic_ids: dict[uuid.UUID, None] = {}
        self.partitions: dict[str, list[int]] = {}
        self.groups: dict[str, None] = {}
        self.txn_ids: dict[str, None] = {}
        self.resources: dict[tuple[int, str], None] = {}

    def topic(self, name: str | None, topic_id: uuid.UUID | None = None,
              partitions: Iterable[int] = ()) -> None:
        if name:
            key = name
            self.topics[name] = None
        elif topic_id is not None:
            key = str(topic_id)
            self.topic_ids[topic_id] = None
        else:
            return
        parts = self.partitions.setdefault(key, [])
        for p in partitions:
            if p not in parts:
                parts.append(p)

    def group(self, name: str | None) -> None:
        if name is not None:
            self.groups[name] = None

    def txn(self, name: str | None) -> None:
        if name is not None:
            self.txn_ids[name] = None


def _ids(v: int, topic: Any) -> uuid.UUID | None:
    value = getattr(topic, "topic_id", None)
    return value if isinstance(value, uuid.UUID) else None


def _produce(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topic_data or ():
        c.topic(t.name if v <= 12 else None, _ids(v, t), (p.index for p in t.partition_data or ()))
    c.txn(msg.transactional_id)
    return OperationKind.WRITE


def _fetch(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.topic if v <= 12 else None, _ids(v, t), (p.partition for p in t.partitions or ()))
    return OperationKind.READ


def _list_offsets(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.name, None, (p.partition_index for p in t.partitions or ()))
    return OperationKind.READ


def _metadata(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.name, _ids(v, t))
    return OperationKind.CLUSTER


def _offset_commit(msg: Message, v: int, c: _Collector) -> OperationKind:
    c.group(msg.group_id)
    for t in msg.topics or ():
        c.topic(t.name if v <= 9 else None, _ids(v, t),
                (p.partition_index for p in t.partitions or ()))
    return OperationKind.READ


def _offset_fetch(msg: Message, v: int, c: _Collector) -> OperationKind:
    if v <= 7:
        c.group(msg.group_id)
        for t in msg.topics or ():
            c.topic(t.name, None, t.partition_indexes or ())
        return OperationKind.READ
    for g in msg.groups or ():
        c.group(g.group_id)
        for t in g.topics or ():
            c.topic(t.name if v <= 9 else None, _ids(v, t), t.partition_indexes or ())
    return OperationKind.READ


def _find_coordinator(msg: Message, v: int, c: _Collector) -> OperationKind:
    keys = [msg.key] if v <= 3 else list(msg.coordinator_keys or ())
    if msg.key_type == COORDINATOR_TRANSACTION:
        for key in keys:
            c.txn(key)
        return OperationKind.WRITE
    for key in keys:
        c.group(key)
    return OperationKind.GROUP


def _group_member(msg: Message, v: int, c: _Collector) -> OperationKind:
    c.group(msg.group_id)
    return OperationKind.READ


def _describe_groups(msg: Message, v: int, c: _Collector) -> OperationKind:
    for g in msg.groups or ():
        c.group(g)
    return OperationKind.DESCRIBE


def _list_groups(msg: Message, v: int, c: _Collector) -> OperationKind:
    return OperationKind.GROUP


def _delete_groups(msg: Message, v: int, c: _Collector) -> OperationKind:
    for g in msg.groups_names or ():
        c.group(g)
    return OperationKind.GROUP


def _cluster(msg: Message, v: int, c: _Collector) -> OperationKind:
    return OperationKind.CLUSTER


def _create_topics(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.name)
    return OperationKind.CREATE


def _delete_topics(msg: Message, v: int, c: _Collector) -> OperationKind:
    if v <= 5:
        for name in msg.topic_names or ():
            c.topic(name)
    else:
        for t in msg.topics or ():
            c.topic(t.name, t.topic_id)
    return OperationKind.DELETE


def _delete_records(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.name, None, (p.partition_index for p in t.partitions or ()))
    return OperationKind.DELETE


def _init_producer_id(msg: Message, v: int, c: _Collector) -> OperationKind:
    c.txn(msg.transactional_id)
    return OperationKind.WRITE


def _offset_for_leader_epoch(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.topic, None, (p.partition for p in t.partitions or ()))
    return OperationKind.READ


def _add_partitions_to_txn(msg: Message, v: int, c: _Collector) -> OperationKind:
    if v <= 3:
        c.txn(msg.v3_and_below_transactional_id)
        for t in msg.v3_and_below_topics or ():
            c.topic(t.name, None, t.partitions or ())
    else:
        for txn in msg.transactions or ():
            c.txn(txn.transactional_id)
            for t in txn.topics or ():
                c.topic(t.name, None, t.partitions or ())
    return OperationKind.WRITE


def _add_offsets_to_txn(msg: Message, v: int, c: _Collector) -> OperationKind:
    c.txn(msg.transactional_id)
    c.group(msg.group_id)
    return OperationKind.WRITE


def _end_txn(msg: Message, v: int, c: _Collector) -> OperationKind:
    c.txn(msg.transactional_id)
    return OperationKind.WRITE


def _txn_offset_commit(msg: Message, v: int, c: _Collector) -> OperationKind:
    c.txn(msg.transactional_id)
    c.group(msg.group_id)
    for t in msg.topics or ():
        c.topic(t.name, None, (p.partition_index for p in t.partitions or ()))
    return OperationKind.WRITE


def _config_resources(msg: Message, c: _Collector) -> None:
    for r in msg.resources or ():
        if r.resource_type == RESOURCE_TOPIC:
            c.topic(r.resource_name)
        else:
            c.resources[(int(r.resource_type), str(r.resource_name))] = None
            if r.resource_type == RESOURCE_GROUP:
                c.group(r.resource_name)


def _describe_configs(msg: Message, v: int, c: _Collector) -> OperationKind:
    _config_resources(msg, c)
    return OperationKind.DESCRIBE


def _alter_configs(msg: Message, v: int, c: _Collector) -> OperationKind:
    _config_resources(msg, c)
    return OperationKind.ALTER


def _create_partitions(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.name)
    return OperationKind.CREATE


def _offset_delete(msg: Message, v: int, c: _Collector) -> OperationKind:
    c.group(msg.group_id)
    for t in msg.topics or ():
        c.topic(t.name, None, (p.partition_index for p in t.partitions or ()))
    return OperationKind.GROUP


def _describe_producers(msg: Message, v: int, c: _Collector) -> OperationKind:
    for t in msg.topics or ():
        c.topic(t.name, None, t.partition_indexes or ())
    return OperationKind.DESCRIBE


_Extractor = Callable[[Message, int, _Collector], OperationKind]

#: One extractor per understood API: fills the collector and says which kind of operation it is.
EXTRACTORS: dict[int, _Extractor] = {
    ApiKey.PRODUCE: _produce,
    ApiKey.FETCH: _fetch,
    ApiKey.LIST_OFFSETS: _list_offsets,
    ApiKey.METADATA: _metadata,
    ApiKey.OFFSET_COMMIT: _offset_commit,
    ApiKey.OFFSET_FETCH: _offset_fetch,
    ApiKey.FIND_COORDINATOR: _find_coordinator,
    ApiKey.JOIN_GROUP: _group_member,
    ApiKey.HEARTBEAT: _group_member,
    ApiKey.LEAVE_GROUP: _group_member,
    ApiKey.SYNC_GROUP: _group_member,
    ApiKey.DESCRIBE_GROUPS: _describe_groups,
    ApiKey.LIST_GROUPS: _list_groups,
    ApiKey.SASL_HANDSHAKE: _cluster,
    ApiKey.API_VERSIONS: _cluster,
    ApiKey.CREATE_TOPICS: _create_topics,
    ApiKey.DELETE_TOPICS: _delete_topics,
    ApiKey.DELETE_RECORDS: _delete_records,
    ApiKey.INIT_PRODUCER_ID: _init_producer_id,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch,
    ApiKey.ADD_PARTITIONS_TO_TXN: _add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: _add_offsets_to_txn,
    ApiKey.END_TXN: _end_txn,
    ApiKey.TXN_OFFSET_COMMIT: _txn_offset_commit,
    ApiKey.DESCRIBE_CONFIGS: _describe_configs,
    ApiKey.ALTER_CONFIGS: _alter_configs,
    ApiKey.SASL_AUTHENTICATE: _cluster,
    ApiKey.CREATE_PARTITIONS: _create_partitions,
    ApiKey.DELETE_GROUPS: _delete_groups,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: _alter_configs,
    ApiKey.OFFSET_DELETE: _offset_delete,
    ApiKey.DESCRIBE_CLUSTER: _cluster,
    ApiKey.DESCRIBE_PRODUCERS: _describe_producers,
}


def _all_topics(api_key: int, version: int, msg: Message) -> bool:
    if api_key == ApiKey.METADATA:
        return msg.topics is None or (version == 0 and not msg.topics)
    if api_key == ApiKey.OFFSET_FETCH:
        if version <= 7:
            return msg.topics is None
        return any(g.topics is None for g in msg.groups or ())
    return False


def decode_request_frame(
    frame: bytes | bytearray, *, views: bool = False
) -> tuple[RequestHeader, Message]:
    """Decode a whole request frame (header + body) of an understood API.

    With `views`, large byte fields (a Produce request's records) are memoryviews of the
    frame instead of copies: for callers that only read or forward them.
    """
    header = parse_request_header(frame)
    if header.api_key not in EXTRACTORS:
        raise ClientProtocolError(
            f"client sent {api_name(header.api_key)} v{header.api_version}, an API streamctl "
            "does not understand (it was not offered in ApiVersions)"
        )
    body = memoryview(frame) if views else frame
    return header, decode_request(header.api_key, header.api_version, body, header.size)


def summarize(frame: bytes) -> RequestSummary:
    """Reduce a request frame to a RequestSummary; ClientProtocolError if it cannot be parsed."""
    header, msg = decode_request_frame(frame)
    return summarize_message(header, msg)


def summarize_message(header: RequestHeader, msg: Message) -> RequestSummary:
    """Summarize an already decoded request (lets the tunnel decode once and reuse the body)."""
    key, version = header.api_key, header.api_version
    collector = _Collector()
    kind = EXTRACTORS[key](msg, version, collector)
    groups = tuple(collector.groups)
    txn_ids = tuple(collector.txn_ids)
    return RequestSummary(
        api_key=key,
        api_version=version,
        correlation_id=header.correlation_id,
        client_id=header.client_id,
        kind=kind,
        topics=tuple(collector.topics),
        topic_ids=tuple(collector.topic_ids),
        partitions=MappingProxyType({k: tuple(v) for k, v in collector.partitions.items()}),
        group=groups[0] if groups else None,
        transactional_id=txn_ids[0] if txn_ids else None,
        expects_response=not (key == ApiKey.PRODUCE and msg.acks == 0),
        all_topics=_all_topics(key, version, msg),
        groups=groups,
        transactional_ids=txn_ids,
        resources=tuple(collector.resources),
        allow_auto_topic_creation=bool(
            key == ApiKey.METADATA
            and bool(collector.topics)
            and (version < 4 or msg.allow_auto_topic_creation)
        ),
    )
