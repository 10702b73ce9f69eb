"""Reading whole Kafka frames from a trio stream, and writing them, with as few copies as possible.

The protocol core's `FrameBuffer` is the reference for framing (and for the diagnosis of
absurd sizes, which this module reuses). On the tunnel's hot path a frame is often a 1 MB
Fetch or Produce, so here the chunks a socket read returns are kept as they are and joined
once into the frame, instead of being appended to and sliced out of a growing buffer; a
large frame is written as its 4-byte size followed by the payload, without concatenating.
"""

from __future__ import annotations

import struct

import trio

from streamctl.kafka.errors import BrokerProtocolError, ClientProtocolError
from streamctl.kafka.framing import FrameBuffer
from streamctl.tunnel import splice

_SIZE = struct.Struct(">i")
#: Below this size a frame is written in one piece (a copy is cheaper than a second syscall).
SPLIT_WRITE_ABOVE = 64 * 1024
#: Bytes asked of a socket per read when no frame size tells how many are coming.
READ_SIZE = 256 * 1024


class UnfinishedFrame(Exception):
    """The stream ended in the middle of a frame."""

    def __init__(self, received: int) -> None:
        super().__init__(f"the stream ended after {received} bytes of an unfinished frame")
        self.received = received


class FrameReader:
    """Hands out the payloads of the frames arriving on one stream, in order."""

    def __init__(self, stream: trio.abc.Stream, max_frame_size: int, peer: str) -> None:
        self._stream = stream
        self._max = max_frame_size
        self._peer = peer
        self._chunk: bytes = b""  # bytes read but not yet handed out start at self._pos
        self._pos = 0
        self._pipe: splice.SplicePipe | None = None  # for relays that stay in the kernel

    def close(self) -> None:
        """Release what a relay holds (its kernel pipe); the stream itself is the caller's."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None

    async def _more(self, at_least: int, exact: bool = False) -> bytes:
        return bytes(await self._stream.receive_some(at_least if exact else
                                                     max(READ_SIZE, at_least)))

    async def next_size(self) -> int | None:
        """Read only the next frame's size (for relaying it); None when the stream ended.

        Nothing past the size is read ahead from the socket, so the rest of the frame is
        still there for `relay` to move without copying it.
        """
        head = await self._take_head(exact=True)
        if head is None:
            return None
        (size,) = _SIZE.unpack(head)
        self._check(size, head)
        return int(size)

    async def take(self, count: int) -> bytes:
        """The next `count` bytes of the current frame (e.g. a response's correlation id).

        Like `next_size`, reads no further than asked.
        """
        return bytes(await self._take_payload(count, exact=True))

    async def relay(
        self, count: int, sink: trio.abc.SendStream, prefix: bytes = b""
    ) -> None:
        """Forward `prefix`, then the next `count` bytes, to `sink` as they arrive.

        Between two plaintext TCP sockets on Linux the bytes go through a kernel pipe
        (splice) and never enter Python; otherwise they are read and written in chunks.
        `prefix` (what the caller has already read of the frame) goes out with the first
        of them, not on its own, unless it is longer than splice.MAX_PREFIX.
        """
        if len(prefix) > splice.MAX_PREFIX:
            await sink.send_all(prefix)
            prefix = b""
        available = len(self._chunk) - self._pos
        if available >= count:
            await sink.send_all(prefix + self._chunk[self._pos : self._pos + count])
            self._pos += count
            return
        if available:
            await sink.send_all(prefix + self._chunk[self._pos :])
            prefix = b""
        left = count - available
        self._chunk, self._pos = b"", 0
        if left and splice.AVAILABLE:
            src, dst = splice.plain_socket(self._stream), splice.plain_socket(sink)
            if src is not None and dst is not None:
                if self._pipe is None:
                    self._pipe = splice.SplicePipe()
                try:
                    await self._pipe.move(src, dst, left, prefix)
                except splice.StreamEnded as exc:
                    raise UnfinishedFrame(available + exc.moved) from None
                return
        while left > 0:
            data = await self._more(left)
            if not data:
                raise UnfinishedFrame(count - left)
            if len(data) > left:
                await sink.send_all(prefix + data[:left])
                self._chunk, self._pos = data, left
                return
            await sink.send_all(prefix + data if prefix else data)
            prefix = b""
            left -= len(data)
        if prefix:
            await sink.send_all(prefix)

    def _check(self, size: int, head: bytes) -> None:
        if not 0 < size <= self._max:
            # The protocol core says in plain words what such a size means (TLS, HTTP...).
            FrameBuffer(self._max, peer=self._peer).feed(
                head + self._chunk[self._pos : self._pos + 4]
            )
            error = ClientProtocolError if self._peer == "client" else BrokerProtocolError
            raise error(f"{self._peer} sent a frame of {size} bytes")

    async def next_payload(self) -> bytes | bytearray | None:
        """The next frame's payload (without its size); None when the stream ended cleanly.

        Raises the protocol core's diagnosed error for an absurd size, UnfinishedFrame when the
        stream ends inside a frame.
        """
        head = await self._take_head()
        if head is None:
            return None
        (size,) = _SIZE.unpack(head)
        self._check(size, head)
        return await self._take_payload(size)

    async def _take_head(self, exact: bool = False) -> bytes | None:
        available = len(self._chunk) - self._pos
        if available >= 4:
            head = self._chunk[self._pos : self._pos + 4]
            self._pos += 4
            return head
        pieces = [self._chunk[self._pos :]]
        got = available
        while got < 4:
            data = await self._more(4 - got, exact)
            if not data:
                if got:
                    raise UnfinishedFrame(got)
                return None
            pieces.append(data)
            got += len(data)
        joined = b"".join(pieces)
        self._chunk, self._pos = joined, 4
        return joined[:4]

    async def _take_payload(self, size: int, exact: bool = False) -> bytes | bytearray:
        available = len(self._chunk) - self._pos
        if available >= size:
            start = self._pos
            self._pos += size
            if start == 0 and size == len(self._chunk):
                return self._chunk
            return self._chunk[start : start + size]
        sock = splice.plain_socket(self._stream) if size - available > READ_SIZE else None
        if sock is not None:
            return await self._read_in_place(sock, size, available)
        view = memoryview(self._chunk)
        pieces: list[bytes | memoryview] = [view[self._pos :]]
        got = available
        last = b""
        while got < size:
            data = await self._more(size - got, exact)
            if not data:
                raise UnfinishedFrame(4 + got)
            last = data
            pieces.append(data)
            got += len(data)
        extra = got - size
        if extra:
            pieces[-1] = memoryview(last)[: len(last) - extra]
            self._chunk, self._pos = last, len(last) - extra
        else:
            self._chunk, self._pos = b"", 0
        return b"".join(pieces)


    async def _read_in_place(
        self, sock: trio.socket.SocketType, size: int, available: int
    ) -> bytes | bytearray:
        """A large frame (a 1 MB Produce) read straight into one buffer, in large pieces.

        No chunk is joined afterwards, and the kernel is asked to wake the tunnel only
        once a good part of what is still due is in (never more than is due), not for
        every segment. The frame comes back as a bytearray.
        """
        frame = bytearray(size)
        view = memoryview(frame)
        view[:available] = memoryview(self._chunk)[self._pos :]
        self._chunk, self._pos = b"", 0
        got = available
        lowat = 1
        try:
            while got < size:
                want = min(size - got, splice.WAKE_BYTES)
                if want != lowat:
                    lowat = splice.set_rcvlowat(sock, want)
                try:
                    n = await sock.recv_into(view[got:], size - got)
                except OSError as exc:
                    raise trio.BrokenResourceError(
                        f"socket error while reading a frame: {exc.strerror}") from exc
                if not n:
                    raise UnfinishedFrame(4 + got)
                got += n
        finally:
            view.release()
            if lowat != 1:
                splice.set_rcvlowat(sock, 1)
        return frame


def frame_size(payload: bytes | bytearray) -> bytes:
    """The 4-byte size that goes before a frame's payload."""
    return _SIZE.pack(len(payload))


async def write_frame(stream: trio.abc.Stream, payload: bytes | bytearray) -> int:
    """Write one frame (size + payload); returns the bytes written."""
    head = frame_size(payload)
    if len(payload) <= SPLIT_WRITE_ABOVE:
        await stream.send_all(head + payload)
    else:
        await stream.send_all(head)
        await stream.send_all(payload)
    return 4 + len(payload)
