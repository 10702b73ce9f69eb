"""Helpers for tunnel tests: a tunnel in a thread for a grant on a harness broker, raw frames."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamctl.tunnel.engine import Tunnel, TunnelThread
from tests.harness.kafka import KafkaCluster
from tests.policy.grants import make_grant


@contextmanager
def tunnel_for(
    cluster: KafkaCluster, tunnel_options: dict[str, Any] | None = None, **grant_options: Any
) -> Iterator[TunnelThread]:
    """Run a tunnel for a grant (built like the server builds it) on a harness broker."""
    grant_options.setdefault("bootstrap", cluster.bootstrap)
    grant = make_grant(**grant_options)
    tunnel = Tunnel(grant, None, **(tunnel_options or {}))
    with TunnelThread(tunnel) as handle:
        yield handle


def split_address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host, int(port)


def request_frame(
    api_key: int, version: int, correlation_id: int, body: bytes, client_id: str = "raw"
) -> bytes:
    """A size-prefixed request frame with a v1 header (non-flexible APIs only)."""
    cid = client_id.encode()
    payload = struct.pack(">hhih", api_key, version, correlation_id, len(cid)) + cid + body
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock: socket.socket) -> bytes:
    """Read one size-prefixed frame payload from a blocking socket."""
    (size,) = struct.unpack(">i", _read_exact(sock, 4))
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)
