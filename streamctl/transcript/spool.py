"""The on-disk spool: one append-only JSON-lines file per session, until it is uploaded.

Each event line is written to the file as soon as it is recorded (so a killed process
loses nothing the kernel already has) and the file is fsynced at a short interval (so
a crashed machine loses at most that interval). The live writer holds an exclusive
lock on its file; `find_pending` skips locked files, so a running session is never
uploaded from under its tunnel, while a SIGKILLed one is found and marked unsealed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamctl.transcript.events import Event, EventType, canonical_json, parse_event_line

#: Spool files are named `<session id>` + this suffix.
SPOOL_SUFFIX = ".jsonl"
#: Default seconds between fsyncs while a session runs.
DEFAULT_FLUSH_INTERVAL = 1.0


class SpoolError(OSError):
    """The spool directory or file cannot be used; the message says which and why."""


def _safe_session_id(session_id: str) -> str:
    if not session_id or not all(c.isalnum() or c in "-_" for c in session_id):
        raise ValueError("a session id may only hold letters, digits, '-' and '_'")
    return session_id


def ensure_spool_dir(spool_dir: Path) -> Path:
    """Create the spool directory (0700) and prove it is writable, before a session starts."""
    try:
        spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = spool_dir / f".probe-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpoolError(
            exc.errno,
            f"transcript spool directory {spool_dir} is not writable ({reason}); "
            "fix its permissions or choose another directory",
        ) from exc
    return spool_dir


def spool_path(spool_dir: Path, session_id: str) -> Path:
    """Where the spool file of a session lives."""
    return spool_dir / f"{_safe_session_id(session_id)}{SPOOL_SUFFIX}"


class SpoolWriter:
    """Appends events of one session to its spool file; thread-safe, fsync at an interval.

    Each event is written at once (the kernel has it even if the process dies). fsync runs
    either inline in `append` once the interval has passed (`sync_in_append`), or from a
    `PeriodicSync` thread; fsync never holds the append lock, so a slow disk does not stall
    the tunnel thread that records.
    """

    def __init__(
        self,
        spool_dir: Path,
        session_id: str,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sync_in_append: bool = True,
    ) -> None:
        ensure_spool_dir(spool_dir)
        self.path = spool_path(spool_dir, session_id)
        self.flush_interval = flush_interval
        self.sync_in_append = sync_in_append
        self._clock = clock
        self._lock = threading.Lock()  # guards the fd and counters; held only for writes
        self._sync_lock = threading.Lock()  # one fsync at a time; close waits for it
        try:
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot open transcript spool {self.path}") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            raise SpoolError(exc.errno, f"transcript spool {self.path} is in use") from exc
        self._last_sync = clock()
        self.synced_events = 0
        self._written_events = 0

    def append(self, event: Event, canonical: bytes | None = None) -> None:
        """Write one event line now; fsync inline when that mode is on and the interval passed.

        `canonical` is the event's canonical JSON when the caller already has it (the chain
        computed it to hash the event), so it is not serialised a second time.
        """
        self.append_lines([canonical if canonical is not None else canonical_json(event)])

    def append_lines(self, lines: list[bytes]) -> None:
        """Write canonical event lines (without their newlines) in one call, in order.

        One produced batch becomes several events; one write for all of them keeps the
        recorder from giving up and taking back the GIL once per event.
        """
        parts: list[bytes] = []
        for line in lines:
            parts += (line, b"\n")
        with self._lock:
            fd = self._require_open()
            written = os.writev(fd, parts)  # the lines without copying them to add "\n"
            size = sum(len(p) for p in parts)
            if written < size:  # a short write (rare): the rest, as it goes
                view = memoryview(b"".join(parts))[written:]
                while view:
                    view = view[os.write(fd, view):]
            self._written_events += len(lines)
        if self.sync_in_append:
            self.sync_if_due()

    def sync_if_due(self) -> bool:
        """fsync when something is unsynced and the interval passed; True when it synced."""
        with self._lock:
            due = (
                self._fd is not None
                and self._written_events > self.synced_events
                and self._clock() - self._last_sync >= self.flush_interval
            )
        return self.sync() if due else False

    def sync(self) -> bool:
        """fsync now, whatever the interval says; False when the spool is already closed."""
        with self._sync_lock:
            with self._lock:
                fd, written = self._fd, self._written_events
            if fd is None:
                return False
            os.fsync(fd)
            with self._lock:
                self._last_sync = self._clock()
                self.synced_events = written
            return True

    def close(self) -> None:
        """fsync, unlock and close; idempotent."""
        with self._sync_lock, self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
                self.synced_events = self._written_events
            finally:
                os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _require_open(self) -> int:
        if self._fd is None:
            raise SpoolError(f"transcript spool {self.path} is closed")
        return self._fd


class PeriodicSync:
    """A daemon thread that fsyncs a spool while the session is idle between events."""

    def __init__(self, writer: SpoolWriter, interval: float) -> None:
        self._writer = writer
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="transcript-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(OSError):
                self._writer.sync_if_due()


def read_spool(path: Path) -> list[Event]:
    """The events of a spool file; a torn last line (process killed mid-write) is dropped."""
    events: list[Event] = []
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                events.append(parse_event_line(raw))
            except ValueError:
                break
    return events


@dataclass(frozen=True)
class PendingSession:
    """A spooled session that is not (yet) on the server."""

    session_id: str
    path: Path
    sealed: bool  # False: the recording process died before writing session_end
    event_count: int


def is_sealed(events: Sequence[Event]) -> bool:
    """True when the last event is the session's own seal."""
    return bool(events) and events[-1].get("type") == EventType.SESSION_END


def _locked_by_someone(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def iter_spool_files(spool_dir: Path) -> Iterator[Path]:
    """Spool files in a directory, oldest first."""
    if not spool_dir.is_dir():
        return
    files = [p for p in spool_dir.iterdir() if p.suffix == SPOOL_SUFFIX and p.is_file()]
    yield from sorted(files, key=lambda p: p.stat().st_mtime)


def find_pending(spool_dir: Path) -> list[PendingSession]:
    """Sessions left in the spool by a failed upload or a killed tunnel, ready to sync.

    Files still locked by a live tunnel are skipped; empty files are ignored.
    """
    found: list[PendingSession] = []
    for path in iter_spool_files(spool_dir):
        if _locked_by_someone(path):
            continue
        events = read_spool(path)
        if not events:
            continue
        found.append(
            PendingSession(
                session_id=path.name[: -len(SPOOL_SUFFIX)],
                path=path,
                sealed=is_sealed(events),
                event_count=len(events),
            )
        )
    return found
