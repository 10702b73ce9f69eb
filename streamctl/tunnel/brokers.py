"""What the tunnel knows about the real cluster: broker addresses, local listeners, topic ids.

One `BrokerMap` per tunnel, shared by all its connections. Every broker node id a client can
learn about gets one local listener; the map turns the address a broker advertises into that
listener's address (opening it on first sight) and remembers the real address to dial when a
client connects there. It also keeps the topic id -> name pairs Metadata revealed, so
requests naming topics by id can be authorized.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

#: Opens a local listener for a node id and returns the (host, port) clients should use.
OpenListener = Callable[[int], tuple[str, int]]


class BrokerMap:
    """Node id <-> real broker address <-> local listener; topic id -> name."""

    def __init__(self, open_listener: OpenListener) -> None:
        self._open_listener = open_listener
        self._real: dict[int, tuple[str, int]] = {}
        self._local: dict[int, tuple[str, int]] = {}
        self._topic_names: dict[uuid.UUID, str] = {}

    def address_of(self, node_id: int, host: str, port: int) -> tuple[str, int]:
        """Record a broker's real address; return its local listener (opened on first sight)."""
        self._real[node_id] = (host, port)
        local = self._local.get(node_id)
        if local is None:
            local = self._open_listener(node_id)
            self._local[node_id] = local
        return local

    def real_address(self, node_id: int) -> tuple[str, int] | None:
        """Where node `node_id` really is, as the cluster last advertised it."""
        return self._real.get(node_id)

    def local_address(self, node_id: int) -> tuple[str, int] | None:
        return self._local.get(node_id)

    def node_ids(self) -> list[int]:
        return sorted(self._local)

    def learn_topic_ids(self, pairs: dict[uuid.UUID, str]) -> None:
        """Remember topic ids from a Metadata answer (a recreated topic gets a new id)."""
        self._topic_names.update(pairs)

    def topic_name_of(self, topic_id: uuid.UUID) -> str | None:
        return self._topic_names.get(topic_id)

    def topic_id_of(self, name: str) -> uuid.UUID | None:
        for topic_id, known in self._topic_names.items():
            if known == name:
                return topic_id
        return None
