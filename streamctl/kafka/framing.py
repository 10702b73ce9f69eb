"""Incremental framing of the Kafka wire protocol: 4-byte big-endian size, then the payload.

`FrameBuffer` is fed whatever a socket read returned and hands out whole frames; it never
holds more than one maximal frame plus the last read. A size that makes no sense is
diagnosed in plain words (TLS on a plaintext port, HTTP, SSH...), because that is almost
always a configuration mistake rather than a corrupt Kafka stream.
"""

from __future__ import annotations

import struct

from streamctl.kafka.errors import (
    BrokerFrameTooLarge,
    BrokerProtocolError,
    ClientProtocolError,
    FrameTooLarge,
    KafkaProtocolError,
)

DEFAULT_MAX_FRAME_SIZE = 100 * 1024 * 1024
_SIZE = struct.Struct(">i")


def encode_frame(payload: bytes) -> bytes:
    """Prefix a payload with its size so it can be written to a Kafka socket."""
    return _SIZE.pack(len(payload)) + payload


def diagnose_prefix(prefix: bytes, peer: str) -> str | None:
    """Say what non-Kafka traffic the first bytes of a stream look like, if anything."""
    other = "broker" if peer == "client" else "client"
    if len(prefix) >= 2 and prefix[0] == 0x16 and prefix[1] == 0x03:
        if peer == "client":
            return (
                "looks like a TLS handshake on a plaintext port: the client speaks TLS "
                "(security.protocol=SSL/SASL_SSL) but the tunnel listens in plaintext"
            )
        return (
            "looks like a TLS handshake from the broker: the broker port expects a "
            "different security protocol than the tunnel uses"
        )
    if len(prefix) >= 2 and prefix[0] == 0x15 and prefix[1] == 0x03:
        return (
            f"looks like a TLS alert from the {peer}: that port speaks TLS but the {other} "
            "side sent plaintext (check security.protocol / the upstream TLS setting)"
        )
    upper = prefix[:8].upper()
    for verb in (b"GET ", b"POST", b"PUT ", b"HEAD", b"HTTP", b"PRI ", b"OPTI", b"DELE", b"PATC"):
        if upper.startswith(verb):
            return f"looks like an HTTP request or response from the {peer}, not Kafka"
    if prefix.startswith(b"SSH-"):
        return f"looks like an SSH banner from the {peer}, not Kafka"
    return None


class FrameBuffer:
    """Collects bytes from one direction of a connection and splits them into frames."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, peer: str = "client") -> None:
        if peer not in ("client", "broker"):
            raise ValueError("peer must be 'client' or 'broker'")
        if max_frame_size <= 0:
            raise ValueError("max_frame_size must be positive")
        self.max_frame_size = max_frame_size
        self.peer = peer
        self._buf = bytearray()
        self._start = 0  # bytes before this index were already handed out
        self._seen_first_frame = False

    def feed(self, data: bytes) -> None:
        """Add bytes as read from the socket; raises at once if a size header is absurd."""
        if self._start and self._start * 2 >= len(self._buf):
            del self._buf[: self._start]
            self._start = 0
        self._buf += data
        self._check_size()

    def buffered(self) -> int:
        """How many bytes are held that were not yet returned as a frame."""
        return len(self._buf) - self._start

    def next_frame(self) -> bytes | None:
        """Return the next complete payload (without its size), or None if more bytes are needed."""
        size = self._check_size()
        if size is None or self.buffered() < 4 + size:
            return None
        begin = self._start + 4
        frame = bytes(self._buf[begin : begin + size])
        self._start = begin + size
        self._seen_first_frame = True
        if self._start == len(self._buf):
            self._buf.clear()
            self._start = 0
        return frame

    def _check_size(self) -> int | None:
        if self.buffered() < 4:
            return None
        (size,) = _SIZE.unpack_from(self._buf, self._start)
        if 0 < size <= self.max_frame_size:
            return int(size)
        raise self._absurd_size(int(size))

    def _absurd_size(self, size: int) -> KafkaProtocolError:
        prefix = bytes(self._buf[self._start : self._start + 8])
        hint = diagnose_prefix(prefix, self.peer)
        if hint is None:
            where = "first frame" if not self._seen_first_frame else "frame"
            if size <= 0:
                hint = f"{where} announces a size of {size} bytes, which is not valid Kafka framing"
            else:
                hint = (
                    f"{where} announces {size} bytes, above the {self.max_frame_size}-byte "
                    "limit; the stream is corrupt or not Kafka"
                )
        message = f"{self.peer} sent an invalid frame: {hint}"
        if self.peer == "client":
            if size > self.max_frame_size:
                return FrameTooLarge(message, size=size, limit=self.max_frame_size)
            return ClientProtocolError(message)
        if size > self.max_frame_size:
            return BrokerFrameTooLarge(message, size=size, limit=self.max_frame_size)
        return BrokerProtocolError(message)
