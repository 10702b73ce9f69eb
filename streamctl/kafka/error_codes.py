"""Kafka error codes the tunnel answers with or looks for, as named integer constants.

Values are Apache Kafka's (org.apache.kafka.common.protocol.Errors); only the ones
streamctl uses are listed so a reader can see at a glance what the tunnel may say.
"""

from __future__ import annotations

from typing import Final

NONE: Final = 0
UNKNOWN_SERVER_ERROR: Final = -1
CORRUPT_MESSAGE: Final = 2
UNKNOWN_TOPIC_OR_PARTITION: Final = 3
INVALID_FETCH_SIZE: Final = 4
LEADER_NOT_AVAILABLE: Final = 5
NOT_LEADER_OR_FOLLOWER: Final = 6
REQUEST_TIMED_OUT: Final = 7
COORDINATOR_NOT_AVAILABLE: Final = 15
NOT_COORDINATOR: Final = 16
INVALID_REQUEST: Final = 42
TOPIC_AUTHORIZATION_FAILED: Final = 29
GROUP_AUTHORIZATION_FAILED: Final = 30
CLUSTER_AUTHORIZATION_FAILED: Final = 31
UNSUPPORTED_SASL_MECHANISM: Final = 33
ILLEGAL_SASL_STATE: Final = 34
UNSUPPORTED_VERSION: Final = 35
POLICY_VIOLATION: Final = 44
TRANSACTIONAL_ID_AUTHORIZATION_FAILED: Final = 53
SECURITY_DISABLED: Final = 54
SASL_AUTHENTICATION_FAILED: Final = 58
UNKNOWN_TOPIC_ID: Final = 100

#: Human names for the codes above, for logs and transcripts.
NAMES: Final[dict[int, str]] = {
    value: name
    for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, int) and name != "NAMES"
}
