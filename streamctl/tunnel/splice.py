"""Moving a relayed response from the broker's socket to the client's inside the kernel.

A Fetch answer the tunnel does not need to look at (no masking, no transcript, no address
to rewrite) is most of what a consumer moves, often 1 MB per request. Read into Python and
written out again, each byte is copied twice between kernel and user space, and on a
loopback or LAN link those copies are what the tunnel spends its time on. Linux's splice(2)
hands the socket's pages to a pipe and the pipe's pages to the other socket instead, so the
bytes never enter the process. Only plaintext TCP on both sides can do this (TLS needs the
bytes in user space); everything else takes the ordinary copy path in `frames`.

`set_rcvlowat` and `WAKE_BYTES` also serve `frames` when it reads a large frame whole: the
same wake-per-large-piece idea, for bytes that do have to enter the process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Final

import trio

from streamctl.tunnel.direct import DirectSocketStream

#: Whether this platform has splice(2) (Linux).
AVAILABLE: Final = hasattr(os, "splice") and hasattr(os, "pipe2")
#: The pipe's capacity is asked for once; Linux lets any process go up to 1 MiB.
PIPE_SIZE: Final = 1 << 20
_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
#: Most bytes `move` puts in its pipe ahead of the relayed ones (a pipe always has 64 KiB).
MAX_PREFIX: Final = 64 * 1024
#: How much of a large frame must be waiting before the tunnel wakes up to take it.
WAKE_BYTES: Final = 1024 * 1024


class StreamEnded(Exception):
    """The source socket closed before the promised number of bytes arrived."""

    def __init__(self, moved: int) -> None:
        super().__init__(f"the stream ended after {moved} bytes")
        self.moved = moved


def plain_socket(stream: object) -> trio.socket.SocketType | None:
    """The socket under a plaintext trio TCP stream, or None if there is none (TLS, tests)."""
    if isinstance(stream, trio.SocketStream | DirectSocketStream) and stream.socket.family in (
        socket.AF_INET, socket.AF_INET6
    ):
        return stream.socket
    return None


class SplicePipe:
    """One connection's kernel pipe, opened on first use and closed with the connection."""

    def __init__(self) -> None:
        self._fds: tuple[int, int] | None = None
        self._capacity = 64 * 1024  # Linux's default, unless the resize below works

    def _open(self) -> tuple[int, int]:
        if self._fds is None:
            read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                self._capacity = fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # a lower pipe-max-size: the default capacity still works, in more steps
            self._fds = (read_fd, write_fd)
        return self._fds

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    async def move(
        self,
        src: trio.socket.SocketType,
        dst: trio.socket.SocketType,
        count: int,
        prefix: bytes = b"",
    ) -> None:
        """Move exactly `count` bytes from `src` to `dst`, waiting as trio does for I/O.

        `prefix` (a frame's size and the part of it already read, at most MAX_PREFIX
        bytes) goes out first, through the pipe with the rest, so the client gets it in the
        same segments instead of a tiny packet of its own, and wakes once for it.

        At most one pipe's worth of bytes is held at a time, so a slow client still stops
        the tunnel from reading the broker (backpressure is kept). A closed or reset socket
        raises trio.BrokenResourceError, as a trio stream would; a source that ends early
        raises StreamEnded.
        """
        read_fd, write_fd = self._open()
        src_fd, dst_fd = src.fileno(), dst.fileno()
        left = count  # still to take from src
        held = 0  # in the pipe, not yet given to dst
        if prefix:
            if len(prefix) > MAX_PREFIX:
                raise ValueError(f"a {len(prefix)}-byte prefix is more than a pipe takes at once")
            held = os.write(write_fd, prefix)  # the pipe is empty here: it takes it whole
        lowat = 1  # the source's SO_RCVLOWAT: wake up only when this many bytes are in
        try:
            while left or held:
                progressed = False
                if left and held < self._capacity:
                    took = _splice(src_fd, write_fd, min(left, self._capacity - held))
                    if took == 0:
                        raise StreamEnded(count - left)
                    if took > 0:
                        left -= took
                        held += took
                        progressed = True
                if held:
                    gave = _splice(read_fd, dst_fd, held)
                    if gave > 0:
                        held -= gave
                        progressed = True
                if progressed:
                    # no trip through the scheduler while bytes flow: a relay is a few steps
                    await trio.lowlevel.checkpoint_if_cancelled()
                elif held:
                    await trio.lowlevel.wait_writable(dst)
                else:
                    # A large answer trickles in a segment at a time; waking for each one
                    # costs more than moving it, so wait until a good part of it is there
                    # (never for more than is still due, or the last bytes would never wake us).
                    want = min(left, WAKE_BYTES)
                    if want != lowat:
                        lowat = set_rcvlowat(src, want)
                    await trio.lowlevel.wait_readable(src)
        finally:
            if lowat != 1:
                set_rcvlowat(src, 1)


def set_rcvlowat(sock: trio.socket.SocketType, size: int) -> int:
    """Set SO_RCVLOWAT; answers the value in force (1 where the platform refuses it)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
    except OSError:
        return 1
    return size


def _splice(src_fd: int, dst_fd: int, count: int) -> int:
    """Bytes moved; -1 when the call would block; 0 when the source has ended."""
    try:
        return os.splice(src_fd, dst_fd, count, flags=_FLAGS)
    except BlockingIOError:
        return -1
    except OSError as exc:
        if exc.errno == errno.EINTR:
            return -1
        raise trio.BrokenResourceError(f"socket error while relaying: {exc.strerror}") from exc
