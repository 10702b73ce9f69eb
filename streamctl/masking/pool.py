"""A second process that masks part of a large partition while the tunnel thread masks the rest.

Masking is CPU-bound Python (JSON parse, keyed hash, serialise), and with one Fetch in flight
per broker it sits on the consumer's critical path. A worker process has its own interpreter
(its own GIL), so it can mask at the same time as the tunnel thread: the thread masks from
the start (batch by batch, or value by value inside one big batch), the worker from the end
in chunks it sends as each is done, and when the thread reaches the first item of a chunk it
has received, the rest is the worker's. They meet wherever their speeds put them, so the
thread never waits for the worker; on a busy machine it simply does more itself.

- The worker starts lazily, the first time a large partition is masked, and is used only once
  it has said it is ready: masking never waits for a start-up.
- The grant's rules and the derived hash key reach the worker over its socket, never through
  argv, the environment or a log line.
- A worker that dies or stalls costs nothing but speed: nothing of it is used unless it
  arrived whole, so the thread masks the rest itself; the worker is then stopped (killed if
  it does not stop) and later partitions are masked in the thread alone. An answer out of
  shape fails the partition closed (MaskingError: an error and no records).
"""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, NoReturn

from streamctl.kafka.records import LAYOUT_STRIDE, RecordSection, record_layout
from streamctl.masking.errors import MaskingError
from streamctl.masking.payload import PayloadMask, payload_mask
from streamctl.policy.grant import MaskingRule

if TYPE_CHECKING:
    from streamctl.masking.masker import GrantMasker

log = logging.getLogger(__name__)

#: Seconds a worker may take to stop a share it was told to stop before it is killed.
DEFAULT_TIMEOUT = 10.0
_READY = "ready"
_VALUES = "values"
_BATCHES = "batches"
_STOP = "stop"
_DONE = "done"
_TOPIC_CACHE_LIMIT = 4096
#: Seconds one read or write of a message to or from the worker may block.
_IO_LIMIT = 1.0
#: Values the worker masks between looks for a stop (the caller met it and needs no more).
_STOP_CHECK = 32


class MaskingWorker:
    """One worker process masking shares of partitions under a grant's rules."""

    def __init__(
        self,
        rules: Sequence[MaskingRule],
        hash_key: bytes | None,
        *,
        max_decompressed: int,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._rules = tuple(rules)
        self._hash_key = hash_key
        self._max_decompressed = max_decompressed
        self._timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._pending = ""  # the kind of share the worker is masking now ("" when idle)
        self._chunks: dict[int, tuple[list[bytes | None], dict[str, int]]] = {}
        self._share_size = 0
        self._worker_done = False
        #: When a share was ended before the worker finished it (None: not draining).
        self._draining_since: float | None = None
        #: Set once the worker failed: from then on the caller masks everything itself.
        self.broken = False
        #: Shares masked by the worker so far.
        self.shares = 0

    def available(self, wait: float = 0.0) -> bool:
        """True when the worker is ready for a share; starts it on first call.

        Waits at most `wait` seconds for a starting worker (the tunnel passes 0: a batch
        that arrives while the worker starts is masked in the calling thread).
        """
        if self.broken:
            return False
        if self._conn is None:
            self._start()
            if self._conn is None:
                return False
        if self._ready:
            return self._drained() and not self.broken
        try:
            if not self._conn.poll(wait):
                return False
            self._ready = self._conn.recv() == _READY
        except (OSError, EOFError):
            self._ready = False
        if not self._ready:
            self._give_up("the masking worker did not start")
        return self._ready

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def submit_values(self, topic: str, header: tuple[int, ...], records: bytes) -> None:
        """Hand the worker a batch's (uncompressed) records; it masks chunks of their
        non-empty values from the last one back, numbered as `replace_values` meets them.

        The caller masks from the first value on and takes the worker's chunks once it
        reaches one (`take_chunks`); `finish_share` ends the share either way.
        """
        self._submit(_VALUES, (_VALUES, topic, (header, records)))
        self._chunks = {}
        self._share_size = -1  # told by the worker with its chunks
        self._worker_done = False

    def submit_batches(self, topic: str, records: bytes) -> None:
        """Hand the worker whole batches; it masks them from the last one back, one chunk
        each (a list holding the masked batch), taken as with `submit_values`."""
        self._submit(_BATCHES, (_BATCHES, topic, records))
        self._chunks = {}
        self._share_size = -1
        self._worker_done = False

    def poll_chunks(self) -> dict[int, tuple[list[bytes | None], dict[str, int]]]:
        """The chunks the worker has finished so far, by first index; never waits."""
        conn = self._conn
        if conn is None or not self._pending:
            return self._chunks
        try:
            while not self._worker_done and conn.poll(0):
                self._take_message(conn.recv())
        except (OSError, EOFError):
            self._give_up("the masking worker stopped")
        return self._chunks

    def take_chunks(self, first: int, counts: dict[str, int]) -> list[bytes | None] | None:
        """The worker's masked values from index `first` to the end, counts added; or None.

        None when `first` does not start an unbroken run of received chunks up to the end.
        """
        chunks, out, index = self._chunks, [], first
        if first not in chunks:
            return None
        while index < self._share_size:
            chunk = chunks.get(index)
            if chunk is None:
                return None
            out += chunk[0]
            index += len(chunk[0])
        if index != self._share_size:
            self._fail("the masking worker answered for the wrong number of values")
        index = first
        while index < self._share_size:
            values, chunk_counts = chunks[index]
            for name, n in chunk_counts.items():
                counts[name] = counts.get(name, 0) + n
            index += len(values)
        self.shares += 1
        self._stop_share()  # the caller has met the worker: what it would do next is done
        return out

    def finish_share(self) -> None:
        """End the current share: the worker stops after its chunk (never waited for)."""
        if not self._pending:
            return
        self._stop_share()
        self._pending = ""
        self._chunks = {}

    def _stop_share(self) -> None:
        """Tell the worker to stop the share after its current chunk (once)."""
        if self._worker_done or self._draining_since is not None or self._conn is None:
            return
        try:
            self._conn.send(_STOP)
        except (OSError, ValueError):
            self._give_up("the masking worker stopped")
            return
        self._draining_since = time.monotonic()

    def _take_message(self, message: Any) -> None:
        if message == _DONE:
            self._worker_done = True
            return
        if type(message) is str:  # a value broke masking there: the caller masks the rest
            return
        if (
            type(message) is not tuple or len(message) != 4 or type(message[0]) is not int
            or type(message[1]) is not list or not message[1] or type(message[2]) is not dict
            or type(message[3]) is not int or not 0 <= message[0] < message[3]
            or self._share_size not in (-1, message[3])
        ):
            self._fail("the masking worker answered something unexpected")
        self._share_size = message[3]
        self._chunks[message[0]] = (message[1], message[2])

    def _drained(self) -> bool:
        """After a share ended early: True once the worker said it stopped."""
        if self._draining_since is None:
            return True
        conn = self._conn
        try:
            while conn is not None and conn.poll(0):
                message = conn.recv()
                if message == _DONE:
                    self._draining_since = None
                    return True
        except (OSError, EOFError):
            self._give_up("the masking worker stopped")
            return False
        if time.monotonic() - self._draining_since > self._timeout:
            self._give_up(f"the masking worker did not stop within {self._timeout:g} s")
        return False

    def _submit(self, kind: str, job: tuple[Any, ...]) -> None:
        if (
            self._conn is None or not self._ready or self._pending
            or self._draining_since is not None
        ):
            raise MaskingError("the masking worker is not ready")
        try:
            self._conn.send(job)
        except (OSError, ValueError, TypeError) as exc:
            self._fail(f"the masking worker could not take work ({type(exc).__name__})")
        self._pending = kind

    def close(self, *, kill: bool = False) -> None:
        """Stop the worker (it also stops by itself when its socket closes); `kill` does not
        give it the two seconds to stop by itself."""
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        self._ready = False
        self._pending = ""
        self._chunks = {}
        self._draining_since = None
        if conn is not None:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
            conn.close()
        if proc is not None:
            try:
                proc.wait(timeout=0 if kill else 2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        # Every read and write on our end gives up after a while: a worker that stalls in
        # the middle of a message costs the tunnel thread at most that, then it is dropped.
        limit = struct.pack("ll", int(_IO_LIMIT), int(_IO_LIMIT % 1 * 1_000_000))
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        try:
            # -P: the worker imports streamctl from where this process does, never from a
            # `streamctl/` folder that happens to be in the current directory.
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "streamctl.masking.worker",
                 str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            self._give_up(f"no worker process ({type(exc).__name__})")
            return
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        try:
            self._conn.send((self._rules, self._hash_key, self._max_decompressed))
        except OSError:
            self._give_up("the masking worker could not be given its rules")

    def _give_up(self, reason: str) -> None:
        self.close(kill=True)
        self.broken = True
        log.warning("masking worker stopped; masking continues in one thread: %s", reason)

    def _fail(self, reason: str) -> NoReturn:
        self._give_up(reason)
        raise MaskingError(reason)


def serve(conn: Connection) -> None:
    """The worker's loop: receive the rules once, then mask shares until told to stop."""
    from streamctl.masking.masker import GrantMasker
    from streamctl.masking.rules import plan_for

    rules, hash_key, max_decompressed = conn.recv()
    masker = GrantMasker.from_rules(rules, hash_key, max_decompressed=max_decompressed)
    masks: dict[str, PayloadMask | None] = {}
    conn.send(_READY)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        if job == _STOP:  # a share the worker had already finished
            continue
        kind, topic, work = job
        try:
            if kind == _BATCHES:
                _mask_batch_chunks(conn, masker, topic, work)
            else:
                if topic not in masks:
                    if len(masks) >= _TOPIC_CACHE_LIMIT:
                        masks.clear()
                    plan = plan_for(masker.rules, topic)
                    masks[topic] = None if plan is None else payload_mask(plan.value)
                _mask_chunks(conn, masks[topic], *work)
        except Exception as exc:  # the caller masks what is left; no content in the text
            conn.send(type(exc).__name__)
        conn.send(_DONE)


def _mask_batch_chunks(conn: Connection, masker: GrantMasker, topic: str, records: bytes) -> None:
    """Mask whole batches from the last one back, sending each; stop when told to."""
    sections = masker.sections(records)
    total = len(sections)
    for index in range(total - 1, -1, -1):
        if conn.poll(0) and conn.recv() == _STOP:
            return
        masked, counts = masker.mask_section(topic, records, sections[index])
        conn.send((index, [bytes(masked)], counts, total))


def _mask_chunks(
    conn: Connection, mask: PayloadMask | None, header: tuple[int, ...], records: bytes
) -> None:
    """Mask a batch's non-empty values in chunks from the last one back, sending each.

    The values are found with `record_layout`, as `replace_values` finds them, so chunk
    indexes match the order in which the caller's transform sees them. Stops when told to.
    """
    if mask is None:
        raise MaskingError("no masking rule covers the topic")
    section = RecordSection(0, len(records), header, records, 0, len(records))
    layout = record_layout(section)
    values = [
        records[layout[i + 5] : layout[i + 5] + layout[i + 6]]
        for i in range(0, len(layout) - 1, LAYOUT_STRIDE)
        if layout[i + 6] > 0
    ]
    total = len(values)
    size = min(max(total // 16, 32), 256)
    end = total
    while end > 0:
        start = max(0, end - size)
        counts: dict[str, int] = {}
        out: list[bytes | None] = []
        add = out.append
        for step in range(start, end, _STOP_CHECK):
            if conn.poll(0) and conn.recv() == _STOP:  # met: the rest of the chunk is done
                return
            for value in values[step : min(step + _STOP_CHECK, end)]:
                new = mask(value, counts)
                add(None if new is value else new)
        conn.send((start, out, counts, total))
        end = start
