"""Rewrite what a broker tells a client about the cluster: addresses, and which topics exist.

Clients connect to whatever host:port the broker advertises, so every advertised address
must become the tunnel's local listener for that node id (Metadata, FindCoordinator v0-v3
and batched v4+, DescribeCluster, and the KIP-951 NodeEndpoints tagged field of Produce v10+
and Fetch v16+ responses). Metadata answers are also filtered to the grant: an all-topics
answer loses the topics the grant does not cover; a topic asked for by name that the grant
does not cover comes back as TOPIC_AUTHORIZATION_FAILED.

All functions take and return a response frame payload (header + body, no size prefix) and
return None when nothing changed, so the tunnel forwards the original bytes untouched. Only
the fields named here change; everything else, unknown tagged fields included, is re-encoded
as it came.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection

from streamctl.kafka import error_codes
from streamctl.kafka.apis import ApiKey
from streamctl.kafka.headers import response_body_offset, response_header_version
from streamctl.kafka.messages import Message, decode_response, encode_response

#: (node id, advertised host, advertised port) -> (host, port) the client should use instead.
AddressOf = Callable[[int, str, int], tuple[str, int]]
#: Whether the grant covers a topic name.
TopicFilter = Callable[[str], bool]

#: APIs whose responses carry broker addresses (Produce/Fetch only from v10/v16).
ADDRESS_APIS: frozenset[int] = frozenset(
    {ApiKey.METADATA, ApiKey.FIND_COORDINATOR, ApiKey.DESCRIBE_CLUSTER, ApiKey.PRODUCE,
     ApiKey.FETCH}
)


def carries_addresses(api_key: int, api_version: int) -> bool:
    """Whether a response of this API version can advertise broker addresses."""
    if api_key == ApiKey.PRODUCE:
        return api_version >= 10
    if api_key == ApiKey.FETCH:
        return api_version >= 16
    return api_key in ADDRESS_APIS


def _split(api_key: int, api_version: int, frame: bytes) -> tuple[bytes, Message]:
    offset = response_body_offset(frame, response_header_version(api_key, api_version))
    return frame[:offset], decode_response(api_key, api_version, frame, offset)


def _join(
    api_key: int, api_version: int, frame: bytes, header: bytes, body: Message
) -> bytes | None:
    out = header + encode_response(api_key, api_version, body)
    return None if out == frame else out


def _move(node_id: int, host: str, port: int, address_of: AddressOf) -> tuple[str, int]:
    if node_id < 0:  # "no node" (an error answer): nothing to point anywhere
        return host, port
    return address_of(node_id, host, port)


def _rewrite_brokers(brokers: list[Message] | None, id_field: str, address_of: AddressOf) -> None:
    for broker in brokers or ():
        broker.host, broker.port = _move(getattr(broker, id_field), broker.host, broker.port,
                                         address_of)


def _filter_topics(
    body: Message, api_version: int, is_granted: TopicFilter, all_topics: bool,
    requested_ids: Collection[uuid.UUID],
) -> None:
    kept = []
    for topic in body.topics or ():
        name = topic.name
        if name is None and topic.error_code != error_codes.NONE:
            kept.append(topic)  # the broker could not resolve a topic id: its answer stands
            continue
        if name is not None and is_granted(name):
            kept.append(topic)
            continue
        if all_topics:
            continue  # an all-topics answer simply does not mention it
        topic.error_code = error_codes.TOPIC_AUTHORIZATION_FAILED
        if topic.topic_id in requested_ids and api_version >= 12:
            topic.name = None  # asked for by id: answer by id, do not reveal the name
        else:
            topic.topic_id = None
        topic.is_internal = False
        topic.partitions = []
        topic.authorized_operations = None
        kept.append(topic)
    body.topics = kept


def rewrite_metadata(
    frame: bytes,
    api_version: int,
    address_of: AddressOf | None = None,
    is_granted: TopicFilter | None = None,
    all_topics: bool = False,
    requested_ids: Collection[uuid.UUID] = (),
) -> bytes | None:
    """Point Metadata's brokers at local listeners and hide what the grant does not cover.

    `all_topics` and `requested_ids` come from the request's summary: an all-topics answer
    omits ungranted topics, a named one marks them TOPIC_AUTHORIZATION_FAILED.
    """
    header, body = _split(ApiKey.METADATA, api_version, frame)
    if address_of is not None:
        _rewrite_brokers(body.brokers, "node_id", address_of)
    if is_granted is not None:
        _filter_topics(body, api_version, is_granted, all_topics, requested_ids)
    return _join(ApiKey.METADATA, api_version, frame, header, body)


def metadata_topic_ids(frame: bytes, api_version: int) -> dict[uuid.UUID, str]:
    """Topic id -> name pairs a Metadata response reveals (v10+), to authorize id-based requests."""
    if api_version < 10:
        return {}
    _header, body = _split(ApiKey.METADATA, api_version, frame)
    return {
        t.topic_id: t.name
        for t in body.topics or ()
        if isinstance(t.topic_id, uuid.UUID) and t.name is not None
    }


def rewrite_find_coordinator(frame: bytes, api_version: int, address_of: AddressOf) -> bytes | None:
    """Point the coordinator(s) of a FindCoordinator answer at local listeners."""
    header, body = _split(ApiKey.FIND_COORDINATOR, api_version, frame)
    if api_version <= 3:
        body.host, body.port = _move(body.node_id, body.host, body.port, address_of)
    else:
        _rewrite_brokers(body.coordinators, "node_id", address_of)
    return _join(ApiKey.FIND_COORDINATOR, api_version, frame, header, body)


def rewrite_describe_cluster(frame: bytes, api_version: int, address_of: AddressOf) -> bytes | None:
    """Point DescribeCluster's brokers at local listeners."""
    header, body = _split(ApiKey.DESCRIBE_CLUSTER, api_version, frame)
    _rewrite_brokers(body.brokers, "broker_id", address_of)
    return _join(ApiKey.DESCRIBE_CLUSTER, api_version, frame, header, body)


def rewrite_node_endpoints(
    api_key: int, frame: bytes, api_version: int, address_of: AddressOf
) -> bytes | None:
    """Point the KIP-951 NodeEndpoints of a Produce v10+ / Fetch v16+ answer at local listeners."""
    if not carries_addresses(api_key, api_version) or api_key not in (ApiKey.PRODUCE, ApiKey.FETCH):
        return None
    header, body = _split(api_key, api_version, frame)
    if not body.node_endpoints:
        return None
    _rewrite_brokers(body.node_endpoints, "node_id", address_of)
    return _join(api_key, api_version, frame, header, body)


def rewrite_addresses(
    api_key: int, api_version: int, frame: bytes, address_of: AddressOf
) -> bytes | None:
    """Rewrite every advertised address in any response; None when there is nothing to change."""
    if api_key == ApiKey.METADATA:
        return rewrite_metadata(frame, api_version, address_of)
    if api_key == ApiKey.FIND_COORDINATOR:
        return rewrite_find_coordinator(frame, api_version, address_of)
    if api_key == ApiKey.DESCRIBE_CLUSTER:
        return rewrite_describe_cluster(frame, api_version, address_of)
    if api_key in (ApiKey.PRODUCE, ApiKey.FETCH):
        return rewrite_node_endpoints(api_key, frame, api_version, address_of)
    return None
