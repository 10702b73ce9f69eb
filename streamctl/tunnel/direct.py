"""A trio TCP stream whose reads and writes skip the scheduler when they need not wait.

trio makes every socket call a checkpoint: a recv or send the kernel completes at once still
ends with a trip through the scheduler (a yield, an epoll poll, a reschedule). One Fetch
round trip through the tunnel made about ten such calls, and those trips were a large part
of the tunnel's CPU per request. `DirectSocketStream` calls the kernel directly, waits as
trio does only when a call would block, and still checks for cancellation on every call.
It yields to the other tasks after `YIELD_EVERY` calls in a row that did not wait, so a
connection whose socket always has data cannot starve the others.

`direct_stream` wraps plain TCP SocketStreams only; TLS to a broker runs on top of one.
`send_soon`, `receive_soon` and `acquire_soon` do the same for its channels and lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import trio

#: Bytes a socket may hold unsent before a write waits (TCP_NOTSENT_LOWAT).
UNSENT_BYTES: Final = 4 * 1024 * 1024
#: Calls that completed without waiting before the stream lets other tasks run.
YIELD_EVERY: Final = 16
_DEFAULT_RECEIVE_SIZE: Final = 64 * 1024
T = TypeVar("T")
#: One piece of bytes to write.
Chunk = bytes | bytearray | memoryview


class DirectSocketStream(trio.abc.HalfCloseableStream):
    """A trio.SocketStream with direct non-blocking reads and writes (see the module doc)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self.socket = stream.socket
        self._streak = 0
        # One call at a time each way, as trio.SocketStream checks: two writers at once
        # would interleave their bytes (and two readers split them) without a word.
        self._receiving = False
        self._sending = False
        # trio keeps at most 16 KiB unsent in the kernel (good for latency of small
        # writes). A broker reads a 1 MB Produce through a ~100 KB receive window, so
        # with that limit the tunnel wrote it in a dozen pieces, waking for each; the
        # kernel may hold it whole instead (its send buffer still bounds it).
        with contextlib.suppress(OSError, AttributeError):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_BYTES)

    def _start_sending(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True

    async def send_eof(self) -> None:
        self._start_sending()
        try:
            await self._stream.send_eof()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        self._start_sending()
        try:
            await self._stream.wait_send_all_might_not_block()
        finally:
            self._sending = False

    async def aclose(self) -> None:
        await self._stream.aclose()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._stream.setsockopt(level, option, value)

    def _fd(self) -> int:
        fd = self.socket.fileno()
        if fd == -1:
            raise trio.ClosedResourceError("the socket was already closed")
        return fd

    async def _wait(self, wait: Callable[[trio.socket.SocketType], Awaitable[None]]) -> None:
        self._streak = 0
        try:
            await wait(self.socket)
        except trio.ClosedResourceError:
            raise
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket error: {exc.strerror}") from exc

    async def _done(self) -> None:
        """What a call owes the other tasks once it is through: now and then a turn.

        Cancellation is checked when a call begins, not here: by now the bytes have left
        the kernel's buffer (or entered it), and raising Cancelled would lose them (a read
        woken by its bytes in the same turn as its deadline passed, say). trio's own socket
        calls end with a shielded checkpoint for the same reason.
        """
        self._streak += 1
        if self._streak >= YIELD_EVERY:
            self._streak = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = _DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving from this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                try:
                    data = os.read(self._fd(), size)
                except BlockingIOError:
                    await self._wait(trio.lowlevel.wait_readable)
                    continue
                except OSError as exc:
                    raise trio.BrokenResourceError(f"socket error: {exc.strerror}") from exc
                await self._done()
                return data
        finally:
            self._receiving = False

    def send_now(self, parts: Sequence[Chunk]) -> int:
        """Write as much of `parts` as the kernel takes at once, without waiting; the count.

        No checkpoint: the caller has just passed one and goes on to a call that has one.
        Refused while a `send_all` is under way, whose bytes it would otherwise split.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self.socket.did_shutdown_SHUT_WR:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        try:
            return os.writev(self._fd(), parts)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket error: {exc.strerror}") from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.socket.did_shutdown_SHUT_WR:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        if self._sending:  # (not `_start_sending`: a call fewer on the hot path)
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            with memoryview(data) as view:
                sent, total = 0, len(view)
                while sent < total:
                    try:
                        sent += os.write(self._fd(), view[sent:] if sent else view)
                    except BlockingIOError:
                        await self._wait(trio.lowlevel.wait_writable)
                    except OSError as exc:
                        raise trio.BrokenResourceError(f"socket error: {exc.strerror}") from exc
            await self._done()
        finally:
            self._sending = False


def unwritten(parts: Sequence[Chunk], written: int) -> list[Chunk]:
    """What is left of `parts` once their first `written` bytes are sent (views, no copies)."""
    left: list[Chunk] = []
    for part in parts:
        if written >= len(part):
            written -= len(part)
            continue
        left.append(memoryview(part)[written:] if written else part)
        written = 0
    return left


def direct_stream(stream: trio.abc.Stream) -> trio.abc.Stream:
    """The stream with direct I/O when it is a plain TCP SocketStream; else unchanged."""
    if isinstance(stream, trio.SocketStream):
        return DirectSocketStream(stream)
    return stream


# Each of these checks for cancellation before it acts, never after: a value sent, received
# or a lock taken is never followed by a Cancelled that would lose or leak it.


async def send_soon(channel: trio.MemorySendChannel[T], value: T) -> None:
    """`channel.send(value)`, without a trip through the scheduler when there is room."""
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        channel.send_nowait(value)
    except trio.WouldBlock:
        await channel.send(value)


async def receive_soon(channel: trio.MemoryReceiveChannel[T]) -> T:
    """`channel.receive()`, without a trip through the scheduler when a value is waiting.

    Raises trio.EndOfChannel once the channel is closed and empty, as `receive` does.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        return channel.receive_nowait()
    except trio.WouldBlock:
        return await channel.receive()


async def acquire_soon(lock: trio.Lock) -> None:
    """`lock.acquire()`, without a trip through the scheduler when the lock is free."""
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()
