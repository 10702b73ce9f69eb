"""`DigestProcess`: produced-record digests computed in a child process, off the tunnel's GIL.

The tunnel's trio thread and the recorder's worker thread share one GIL. Hashing every
produced record is CPU-bound Python holding that GIL, so the tunnel waits for it (up to a
switch interval at a time) while it should be relaying. With the digests in a child
process, the worker thread only writes the records field to a pipe and waits (GIL
released) for the hex digests; the tunnel's process is left the cheap part (JSON, chain).

Nothing is lost if the child cannot help: small records fields (where a round trip costs
more than it saves), a child that fails to start, dies or answers nonsense — each of these
is digested in this process instead, with the same result. Used from one thread only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import streamctl
from streamctl.kafka.errors import KafkaProtocolError
from streamctl.kafka.records import iter_batch_headers
from streamctl.transcript.digests import (
    DIGESTS,
    HEX_SIZE,
    LENGTH,
    READY,
    UNDECODABLE,
    record_digests,
    split_hex,
)

#: Records fields smaller than this are digested in this process (a round trip costs more).
MIN_CHILD_BYTES = 16 * 1024
#: Pipe buffer asked for, so a 1 MB produce goes over in few writes (Linux; a hint only).
_PIPE_SIZE = 1024 * 1024
#: Seconds the child may take to exit once its stdin is closed.
_EXIT_WAIT = 5.0
#: Seconds the child may take to start (import its modules) before it is given up on.
START_TIMEOUT = 5.0
#: Seconds one exchange may take before the child is given up on (a 1 MB field takes ms),
#: plus `_SECONDS_PER_RECORD` for each record its batch headers announce: a compressed
#: field can hold millions of tiny records, and a slow answer is not a hung child.
EXCHANGE_TIMEOUT = 10.0
_SECONDS_PER_RECORD = 10e-6
_HEX_DIGITS = b"0123456789abcdef"


class DigestProcess:
    """A child process that digests records fields; falls back to this process on any trouble."""

    def __init__(self, *, min_child_bytes: int = MIN_CHILD_BYTES) -> None:
        self.min_child_bytes = min_child_bytes
        self._proc: subprocess.Popen[bytes] | None = None
        #: Records fields the child digested (for tests and diagnostics).
        self.child_calls = 0

    def start(self, timeout: float = START_TIMEOUT) -> bool:
        """Start the child and wait until it is ready; False (digests here) when it cannot run.

        Waiting here, at session start, keeps the child's start-up (an interpreter and its
        imports) out of the session's traffic.
        """
        if getattr(sys, "frozen", False) or not sys.executable:
            return False
        # The child imports exactly what this process imports (its sys.path, streamctl's own
        # root first), without site processing, in a minimal environment: it needs nothing
        # else, and must not inherit credentials the parent's environment may hold.
        root = str(Path(streamctl.__file__).resolve().parent.parent)
        paths = [root] + [p for p in sys.path if p and p != root and os.path.isdir(p)]
        env = {"PYTHONPATH": os.pathsep.join(paths)}
        for name in ("PYTHONHOME", "PATH", "LANG", "LC_ALL", "STREAMCTL_PURE_PYTHON"):
            if name in os.environ:
                env[name] = os.environ[name]
        try:
            proc = subprocess.Popen(
                # -P: never import from the current directory (a `streamctl/` folder there)
                [sys.executable, "-S", "-P", "-m", "streamctl.transcript.digests"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, close_fds=True, start_new_session=True,
            )
        except OSError:
            return False
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            # Non-blocking pipes: every wait for the child is bounded, so a hung child
            # cannot hang the recording (it is killed and this process takes over).
            for pipe in (proc.stdin, proc.stdout):
                os.set_blocking(pipe.fileno(), False)
                if hasattr(fcntl, "F_SETPIPE_SZ"):
                    with contextlib.suppress(OSError):
                        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            if _receive(proc.stdout.fileno(), 1, time.monotonic() + timeout) != READY:
                raise EOFError("the digest process did not start")
        except (OSError, EOFError):
            self.close(kill=True)
            return False
        return True

    @property
    def running(self) -> bool:
        return self._proc is not None

    def record_digests(self, records: bytes) -> list[str]:
        """The same as `digests.record_digests(records)`, computed by the child when it can."""
        proc = self._proc
        if proc is None or len(records) < self.min_child_bytes:
            return record_digests(records)
        try:
            expected = sum(h.record_count for h in iter_batch_headers(records) if h.magic >= 2)
        except KafkaProtocolError:
            return record_digests(records)  # says in this process why it cannot be read
        timeout = EXCHANGE_TIMEOUT + expected * _SECONDS_PER_RECORD
        try:
            kind, payload = self._exchange(proc, records, timeout)
        except (OSError, EOFError, ValueError):
            self.close(kill=True)  # a dead, hung or confused child is not asked again
            return record_digests(records)
        if kind == DIGESTS and (
            len(payload) != expected * HEX_SIZE or payload.translate(None, _HEX_DIGITS)
        ):  # not one hex digest per record the headers announce: not trusted, not asked again
            self.close(kill=True)
            return record_digests(records)
        if kind == DIGESTS:
            self.child_calls += 1
            return split_hex(payload.decode("ascii"))
        if kind == UNDECODABLE:
            raise KafkaProtocolError(payload.decode("utf-8", "replace"))
        return record_digests(records)  # the child failed unexpectedly on these bytes

    @staticmethod
    def _exchange(
        proc: subprocess.Popen[bytes], records: bytes, timeout: float
    ) -> tuple[bytes, bytes]:
        assert proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout
        _send(proc.stdin.fileno(), (LENGTH.pack(len(records)), records), deadline)
        reader = proc.stdout.fileno()
        head = _receive(reader, 1 + LENGTH.size, deadline)
        kind = head[:1]
        (size,) = LENGTH.unpack_from(head, 1)
        payload = _receive(reader, size, deadline) if size else b""
        if kind == DIGESTS and (size % HEX_SIZE or not payload.isascii()):
            raise ValueError("the digest process answered a malformed digest run")
        return kind, payload

    def close(self, *, kill: bool = False) -> None:
        """Let the child exit (it reads end of stream), or kill it, and reap it; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            proc.wait(_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(fd: int, event: int, deadline: float) -> None:
    """Wait until fd is ready for `event` (POLLIN/POLLOUT); TimeoutError at the deadline."""
    left = deadline - time.monotonic()
    poller = select.poll()
    poller.register(fd, event)
    if left <= 0 or not poller.poll(left * 1000):
        raise TimeoutError("the digest process did not answer in time")


def _send(fd: int, parts: tuple[bytes, ...], deadline: float) -> None:
    """Write every part to the non-blocking fd, waiting at most until the deadline."""
    for part in parts:
        view = memoryview(part)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                _wait(fd, select.POLLOUT, deadline)


def _receive(fd: int, count: int, deadline: float) -> bytes:
    """Exactly `count` bytes from the non-blocking fd; EOFError if the child's end closed."""
    buf = bytearray(count)
    view = memoryview(buf)
    got = 0
    while got < count:
        try:
            n = os.readv(fd, [view[got:]])
        except BlockingIOError:
            _wait(fd, select.POLLIN, deadline)
            continue
        if n == 0:
            raise EOFError("the digest process ended")
        got += n
    return bytes(buf)
