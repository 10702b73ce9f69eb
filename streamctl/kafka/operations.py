"""The operation kinds a Kafka request is sorted into before a policy decides on it.

One vocabulary for the summary extractor, the grant, the policy file and the CLI:
a grant names the kinds it allows, and every request maps to exactly one kind.
"""

from __future__ import annotations

from enum import StrEnum


class OperationKind(StrEnum):
    """What a request does, in the words a grant uses."""

    READ = "read"  # Fetch, ListOffsets, OffsetFetch/Commit, consumer-group membership
    WRITE = "write"  # Produce, InitProducerId, transactions
    CREATE = "create"  # CreateTopics, CreatePartitions
    DELETE = "delete"  # DeleteTopics, DeleteRecords
    ALTER = "alter"  # AlterConfigs, IncrementalAlterConfigs
    DESCRIBE = "describe"  # DescribeConfigs, DescribeGroups, DescribeProducers
    GROUP = "group"  # group coordination that is not tied to a topic (ListGroups, DeleteGroups)
    CLUSTER = "cluster"  # Metadata, ApiVersions, DescribeCluster, SASL: needed by every client


#: The kinds a person or bot can ask for in a grant; GROUP and CLUSTER follow from them.
GRANTABLE: frozenset[OperationKind] = frozenset(
    {
        OperationKind.READ,
        OperationKind.WRITE,
        OperationKind.CREATE,
        OperationKind.DELETE,
        OperationKind.ALTER,
        OperationKind.DESCRIBE,
    }
)
