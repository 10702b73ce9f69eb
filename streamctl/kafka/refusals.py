"""Answer a request locally with a Kafka error instead of forwarding it.

A refused request still gets a well-formed response at the client's API version, with the
error code on every topic, partition, group or resource the request named, so the client
reports "not authorized" (and stops) instead of treating a disconnect as a network blip and
retrying forever. Produce with acks=0 gets nothing: the client does not read a response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamctl.kafka import error_codes
from streamctl.kafka.apis import MESSAGE_CLASSES, ApiKey
from streamctl.kafka.headers import encode_response_header, response_header_version
from streamctl.kafka.messages import Message, encode_response
from streamctl.kafka.summary import decode_request_frame

_Builder = Callable[[Message, int, int, str | None], Message]


def _resp(key: int) -> Any:
    return MESSAGE_CLASSES[key][1]


def _produce(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.PRODUCE)
    topics = [
        r.TopicProduceResponse(
            version=v,
            name=t.name,
            topic_id=t.topic_id,
            partition_responses=[
                r.TopicProduceResponse.PartitionProduceResponse(
                    version=v, index=p.index, error_code=err, base_offset=-1, error_message=text
                )
                for p in t.partition_data or ()
            ],
        )
        for t in req.topic_data or ()
    ]
    return r(version=v, responses=topics)


def _fetch(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.FETCH)
    topics = [
        r.FetchableTopicResponse(
            version=v,
            topic=t.topic,
            topic_id=t.topic_id,
            partitions=[
                r.FetchableTopicResponse.PartitionData(
                    version=v,
                    partition_index=p.partition,
                    error_code=err,
                    high_watermark=-1,
                    aborted_transactions=None,
                    records=b"",
                )
                for p in t.partitions or ()
            ],
        )
        for t in req.topics or ()
    ]
    return r(version=v, error_code=0, session_id=0, responses=topics)


def _list_offsets(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.LIST_OFFSETS)
    t_cls = r.ListOffsetsTopicResponse
    topics = [
        t_cls(
            version=v,
            name=t.name,
            partitions=[
                t_cls.ListOffsetsPartitionResponse(
                    version=v, partition_index=p.partition_index, error_code=err,
                    timestamp=-1, offset=-1, leader_epoch=-1,
                )
                for p in t.partitions or ()
            ],
        )
        for t in req.topics or ()
    ]
    return r(version=v, topics=topics)


def _metadata(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.METADATA)
    topics = [
        r.MetadataResponseTopic(
            version=v, error_code=err, name=t.name, topic_id=t.topic_id, partitions=[]
        )
        for t in req.topics or ()
    ]
    return r(version=v, brokers=[], cluster_id=None, controller_id=-1, topics=topics,
             error_code=err if v >= 13 else 0)


def _offset_commit(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.OFFSET_COMMIT)
    t_cls = r.OffsetCommitResponseTopic
    topics = [
        t_cls(
            version=v, name=t.name, topic_id=t.topic_id,
            partitions=[
                t_cls.OffsetCommitResponsePartition(
                    version=v, partition_index=p.partition_index, error_code=err
                )
                for p in t.partitions or ()
            ],
        )
        for t in req.topics or ()
    ]
    return r(version=v, topics=topics)


def _offset_fetch(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.OFFSET_FETCH)
    if v <= 7:
        t_cls = r.OffsetFetchResponseTopic
        topics = [
            t_cls(
                version=v, name=t.name,
                partitions=[
                    t_cls.OffsetFetchResponsePartition(
                        version=v, partition_index=p, committed_offset=-1,
                        committed_leader_epoch=-1, metadata="", error_code=err,
                    )
                    for p in t.partition_indexes or ()
                ],
            )
            for t in req.topics or ()
        ]
        return r(version=v, topics=topics, error_code=err)
    g_cls = r.OffsetFetchResponseGroup
    t_cls = g_cls.OffsetFetchResponseTopics
    groups = [
        g_cls(
            version=v, group_id=g.group_id, error_code=err,
            topics=[
                t_cls(
                    version=v, name=t.name, topic_id=t.topic_id,
                    partitions=[
                        t_cls.OffsetFetchResponsePartitions(
                            version=v, partition_index=p, committed_offset=-1,
                            committed_leader_epoch=-1, metadata="", error_code=err,
                        )
                        for p in t.partition_indexes or ()
                    ],
                )
                for t in g.topics or ()
            ],
        )
        for g in req.groups or ()
    ]
    return r(version=v, groups=groups)


def _find_coordinator(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.FIND_COORDINATOR)
    if v <= 3:
        return r(version=v, error_code=err, error_message=text, node_id=-1, host="", port=-1)
    coordinators = [
        r.Coordinator(version=v, key=k, node_id=-1, host="", port=-1, error_code=err,
                      error_message=text)
        for k in req.coordinator_keys or ()
    ]
    return r(version=v, coordinators=coordinators)


def _join_group(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.JOIN_GROUP)
    return r(version=v, error_code=err, generation_id=-1, protocol_type=None,
             protocol_name=None if v >= 7 else "", leader="", member_id=req.member_id,
             members=[])


def _heartbeat(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.HEARTBEAT)(version=v, error_code=err)


def _leave_group(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.LEAVE_GROUP)
    members = [
        r.MemberResponse(version=v, member_id=m.member_id,
                         group_instance_id=m.group_instance_id, error_code=err)
        for m in (req.members or () if v >= 3 else ())
    ]
    return r(version=v, error_code=err, members=members)


def _sync_group(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.SYNC_GROUP)(version=v, error_code=err, protocol_type=None,
                                    protocol_name=None, assignment=b"")


def _describe_groups(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.DESCRIBE_GROUPS)
    groups = [
        r.DescribedGroup(version=v, error_code=err, error_message=text, group_id=g,
                         group_state="", protocol_type="", protocol_data="", members=[],
                         authorized_operations=None)
        for g in req.groups or ()
    ]
    return r(version=v, groups=groups)


def _list_groups(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.LIST_GROUPS)(version=v, error_code=err, groups=[])


def _sasl_handshake(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.SASL_HANDSHAKE)(version=v, error_code=err, mechanisms=[])


def _api_versions(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.API_VERSIONS)(version=0, error_code=err, api_keys=[])


def _create_topics(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.CREATE_TOPICS)
    topics = [
        r.CreatableTopicResult(version=v, name=t.name, error_code=err, error_message=text,
                               num_partitions=-1, replication_factor=-1, configs=None)
        for t in req.topics or ()
    ]
    return r(version=v, topics=topics)


def _delete_topics(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.DELETE_TOPICS)
    if v <= 5:
        named = [(name, None) for name in req.topic_names or ()]
    else:
        named = [(t.name, t.topic_id) for t in req.topics or ()]
    results = [
        r.DeletableTopicResult(version=v, name=name, topic_id=tid, error_code=err,
                               error_message=text)
        for name, tid in named
    ]
    return r(version=v, responses=results)


def _delete_records(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.DELETE_RECORDS)
    t_cls = r.DeleteRecordsTopicResult
    topics = [
        t_cls(version=v, name=t.name, partitions=[
            t_cls.DeleteRecordsPartitionResult(version=v, partition_index=p.partition_index,
                                               low_watermark=-1, error_code=err)
            for p in t.partitions or ()
        ])
        for t in req.topics or ()
    ]
    return r(version=v, topics=topics)


def _init_producer_id(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.INIT_PRODUCER_ID)(
        version=v, error_code=err, producer_id=-1, producer_epoch=-1,
        ongoing_txn_producer_id=-1, ongoing_txn_producer_epoch=-1,
    )


def _offset_for_leader_epoch(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.OFFSET_FOR_LEADER_EPOCH)
    t_cls = r.OffsetForLeaderTopicResult
    topics = [
        t_cls(version=v, topic=t.topic, partitions=[
            t_cls.EpochEndOffset(version=v, error_code=err, partition=p.partition,
                                 leader_epoch=-1, end_offset=-1)
            for p in t.partitions or ()
        ])
        for t in req.topics or ()
    ]
    return r(version=v, topics=topics)


def _txn_topic_results(cls: Any, v: int, topics: Any, err: int) -> list[Any]:
    p_cls = cls.AddPartitionsToTxnPartitionResult
    return [
        cls(version=v, name=t.name, results_by_partition=[
            p_cls(version=v, partition_index=p, partition_error_code=err)
            for p in t.partitions or ()
        ])
        for t in topics or ()
    ]


def _add_partitions_to_txn(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.ADD_PARTITIONS_TO_TXN)
    if v <= 3:
        return r(version=v, results_by_topic_v3_and_below=_txn_topic_results(
            r.AddPartitionsToTxnTopicResult, v, req.v3_and_below_topics, err))
    res_cls = r.AddPartitionsToTxnResult
    results = [
        res_cls(version=v, transactional_id=txn.transactional_id,
                topic_results=_txn_topic_results(
                    res_cls.AddPartitionsToTxnTopicResult, v, txn.topics, err))
        for txn in req.transactions or ()
    ]
    return r(version=v, error_code=err, results_by_transaction=results)


def _add_offsets_to_txn(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.ADD_OFFSETS_TO_TXN)(version=v, error_code=err)


def _end_txn(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.END_TXN)(version=v, error_code=err, producer_id=-1, producer_epoch=-1)


def _txn_offset_commit(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.TXN_OFFSET_COMMIT)
    t_cls = r.TxnOffsetCommitResponseTopic
    topics = [
        t_cls(version=v, name=t.name, partitions=[
            t_cls.TxnOffsetCommitResponsePartition(
                version=v, partition_index=p.partition_index, error_code=err)
            for p in t.partitions or ()
        ])
        for t in req.topics or ()
    ]
    return r(version=v, topics=topics)


def _describe_configs(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.DESCRIBE_CONFIGS)
    results = [
        r.DescribeConfigsResult(version=v, error_code=err, error_message=text,
                                resource_type=res.resource_type,
                                resource_name=res.resource_name, configs=[])
        for res in req.resources or ()
    ]
    return r(version=v, results=results)


def _alter_configs_like(key: int) -> _Builder:
    def build(req: Message, v: int, err: int, text: str | None) -> Message:
        r = _resp(key)
        responses = [
            r.AlterConfigsResourceResponse(version=v, error_code=err, error_message=text,
                                           resource_type=res.resource_type,
                                           resource_name=res.resource_name)
            for res in req.resources or ()
        ]
        return r(version=v, responses=responses)

    return build


def _sasl_authenticate(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.SASL_AUTHENTICATE)(version=v, error_code=err, error_message=text,
                                           auth_bytes=b"", session_lifetime_ms=0)


def _create_partitions(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.CREATE_PARTITIONS)
    results = [
        r.CreatePartitionsTopicResult(version=v, name=t.name, error_code=err,
                                      error_message=text)
        for t in req.topics or ()
    ]
    return r(version=v, results=results)


def _delete_groups(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.DELETE_GROUPS)
    results = [
        r.DeletableGroupResult(version=v, group_id=g, error_code=err)
        for g in req.groups_names or ()
    ]
    return r(version=v, results=results)


def _offset_delete(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.OFFSET_DELETE)
    t_cls = r.OffsetDeleteResponseTopic
    topics = [
        t_cls(version=v, name=t.name, partitions=[
            t_cls.OffsetDeleteResponsePartition(
                version=v, partition_index=p.partition_index, error_code=err)
            for p in t.partitions or ()
        ])
        for t in req.topics or ()
    ]
    named_partitions = any(t.partitions for t in topics)
    top = err if err == error_codes.GROUP_AUTHORIZATION_FAILED or not named_partitions else 0
    return r(version=v, error_code=top, topics=topics)


def _describe_cluster(req: Message, v: int, err: int, text: str | None) -> Message:
    return _resp(ApiKey.DESCRIBE_CLUSTER)(
        version=v, error_code=err, error_message=text, endpoint_type=req.endpoint_type,
        cluster_id="", controller_id=-1, brokers=[], authorized_operations=None,
    )


def _describe_producers(req: Message, v: int, err: int, text: str | None) -> Message:
    r = _resp(ApiKey.DESCRIBE_PRODUCERS)
    t_cls = r.TopicResponse
    topics = [
        t_cls(version=v, name=t.name, partitions=[
            t_cls.PartitionResponse(version=v, partition_index=p, error_code=err,
                                    error_message=text, active_producers=[])
            for p in t.partition_indexes or ()
        ])
        for t in req.topics or ()
    ]
    return r(version=v, topics=topics)


#: One builder per understood API: the response that carries the error everywhere it can.
BUILDERS: dict[int, _Builder] = {
    ApiKey.PRODUCE: _produce,
    ApiKey.FETCH: _fetch,
    ApiKey.LIST_OFFSETS: _list_offsets,
    ApiKey.METADATA: _metadata,
    ApiKey.OFFSET_COMMIT: _offset_commit,
    ApiKey.OFFSET_FETCH: _offset_fetch,
    ApiKey.FIND_COORDINATOR: _find_coordinator,
    ApiKey.JOIN_GROUP: _join_group,
    ApiKey.HEARTBEAT: _heartbeat,
    ApiKey.LEAVE_GROUP: _leave_group,
    ApiKey.SYNC_GROUP: _sync_group,
    ApiKey.DESCRIBE_GROUPS: _describe_groups,
    ApiKey.LIST_GROUPS: _list_groups,
    ApiKey.SASL_HANDSHAKE: _sasl_handshake,
    ApiKey.API_VERSIONS: _api_versions,
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
    ApiKey.ALTER_CONFIGS: _alter_configs_like(ApiKey.ALTER_CONFIGS),
    ApiKey.SASL_AUTHENTICATE: _sasl_authenticate,
    ApiKey.CREATE_PARTITIONS: _create_partitions,
    ApiKey.DELETE_GROUPS: _delete_groups,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: _alter_configs_like(ApiKey.INCREMENTAL_ALTER_CONFIGS),
    ApiKey.OFFSET_DELETE: _offset_delete,
    ApiKey.DESCRIBE_CLUSTER: _describe_cluster,
    ApiKey.DESCRIBE_PRODUCERS: _describe_producers,
}


def refusal_response(
    frame: bytes | bytearray, error_code: int, message: str | None = None
) -> bytes | None:
    """The response payload (header + body, no size) refusing this request; None for acks=0.

    Raises ClientProtocolError when the request itself cannot be parsed.
    """
    header, req = decode_request_frame(frame)
    key, version = header.api_key, header.api_version
    if key == ApiKey.PRODUCE and req.acks == 0:
        return None
    if key == ApiKey.API_VERSIONS:
        # Clients read an ApiVersions error as a v0 body (KIP-511), whatever they asked for.
        from streamctl.kafka.versions import api_versions_error

        return api_versions_error(header.correlation_id, error_code)
    body = encode_response(key, version, BUILDERS[key](req, version, error_code, message))
    return encode_response_header(
        header.correlation_id, response_header_version(key, version)
    ) + body
