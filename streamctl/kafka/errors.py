"""Typed protocol errors that say whose fault a broken exchange is and what probably happened.

Modelled on h11's local/remote split: the tunnel sits between a client and a broker, so
every error names the side that broke the protocol (the client or the broker). The message
is meant to be shown to a person as is: one line, no secrets, no raw payloads.
"""

from __future__ import annotations

from typing import ClassVar


class KafkaProtocolError(Exception):
    """A peer sent bytes that are not valid Kafka protocol; the base for both sides."""

    #: Who sent the bad bytes: "client", "broker" or "peer" when it is not known.
    culprit: ClassVar[str] = "peer"


class ClientProtocolError(KafkaProtocolError):
    """The Kafka client (the tunnel's downstream side) broke the protocol."""

    culprit: ClassVar[str] = "client"


class BrokerProtocolError(KafkaProtocolError):
    """The Kafka broker (the tunnel's upstream side) broke the protocol."""

    culprit: ClassVar[str] = "broker"


class FrameTooLarge(ClientProtocolError):
    """A client frame announced a size above the configured maximum (or below zero)."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class BrokerFrameTooLarge(BrokerProtocolError):
    """A broker frame announced a size above the configured maximum (or below zero)."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit

