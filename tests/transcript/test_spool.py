"""Spool: append + fsync at an interval, locking, torn lines, unwritable dirs, SIGKILL recovery."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from streamctl.transcript import spool as spool_module
from streamctl.transcript.chain import HashChain, verify_chain
from streamctl.transcript.spool import (
    SpoolError,
    SpoolWriter,
    ensure_spool_dir,
    find_pending,
    read_spool,
)

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_events_reach_the_file_at_once_and_fsync_follows_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(spool_module.os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))
    clock = FakeClock()
    writer = SpoolWriter(tmp_path, "s1", flush_interval=1.0, clock=clock)
    syncs.clear()  # the directory probe fsyncs once
    chain = HashChain()
    writer.append(chain.append("session_start", 1.0, {}))
    writer.append(chain.append("request", 1.0, {}))
    assert len(read_spool(writer.path)) == 2  # written through, before any fsync
    assert syncs == []
    assert writer.sync_if_due() is False
    clock.now = 1.5
    writer.append(chain.append("request", 2.0, {}))
    assert len(syncs) == 1 and writer.synced_events == 3
    writer.append(chain.append("request", 2.1, {}))
    assert writer.sync_if_due() is False  # interval not over since the last fsync
    clock.now = 3.0
    assert writer.sync_if_due() is True
    assert writer.synced_events == 4
    writer.close()
    assert oct(writer.path.stat().st_mode & 0o777) == "0o600"


def test_live_spool_is_not_pending_until_closed(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "live")
    writer.append(HashChain().append("session_start", 1.0, {}))
    assert find_pending(tmp_path) == []
    with pytest.raises(SpoolError, match="in use"):
        SpoolWriter(tmp_path, "live")
    writer.close()
    [pending] = find_pending(tmp_path)
    assert pending.session_id == "live" and pending.sealed is False and pending.event_count == 1


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    chain = HashChain()
    with SpoolWriterCtx(tmp_path, "torn") as writer:
        for i in range(3):
            writer.append(chain.append("request", float(i), {"i": i}))
    with writer.path.open("ab") as fh:
        fh.write(b'{"seq":3,"ts":')
    events = read_spool(writer.path)
    assert [e["seq"] for e in events] == [0, 1, 2]
    assert verify_chain(events) is None


class SpoolWriterCtx:
    def __init__(self, spool_dir: Path, session_id: str) -> None:
        self.writer = SpoolWriter(spool_dir, session_id)

    def __enter__(self) -> SpoolWriter:
        return self.writer

    def __exit__(self, *exc: object) -> None:
        self.writer.close()


def test_session_ids_cannot_escape_the_spool_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SpoolWriter(tmp_path, "../evil")


def test_spool_dir_that_is_a_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(SpoolError, match="not writable") as info:
        ensure_spool_dir(blocker / "spool")
    assert str(blocker) in str(info.value)


def test_read_only_spool_dir_refuses_the_recorder() -> None:
    """A read-only directory (checked as an unprivileged user) stops the recorder at start."""
    base = Path(tempfile.mkdtemp(prefix="streamctl-ro-"))
    try:
        base.chmod(0o755)
        spool_dir = base / "spool"
        spool_dir.mkdir(mode=0o555)
        spool_dir.chmod(0o555)
        code = textwrap.dedent(
            f"""
            import os
            from pathlib import Path
            from streamctl.transcript.recorder import TranscriptRecorder
            from streamctl.transcript.spool import SpoolError
            if os.geteuid() == 0:  # root writes anywhere: prove it as "nobody"
                os.setgid(65534)
                os.setuid(65534)
            try:
                TranscriptRecorder(Path({str(spool_dir)!r}), subject="a", grant_id="g")
            except SpoolError as exc:
                print("REFUSED", exc)
            else:
                print("STARTED")
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
            cwd=str(REPO),
        )
        assert "REFUSED" in proc.stdout, proc.stdout + proc.stderr
        assert "is not writable" in proc.stdout and str(spool_dir) in proc.stdout
        assert list(spool_dir.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_sigkilled_session_is_recovered_unsealed(tmp_path: Path) -> None:
    """A tunnel killed mid-session leaves a verifiable, unsealed spool that sync finds."""
    spool_dir = tmp_path / "spool"
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from streamctl.transcript.recorder import TranscriptRecorder
        from tests.transcript.helpers import Summary, Verdict, batch_bytes
        rec = TranscriptRecorder(Path({str(spool_dir)!r}), subject="alice", grant_id="g1",
                                 session_id="killed", flush_interval=0.05)
        for i in range(40):
            rec.on_request("c1", Summary(correlation_id=i), Verdict())
            rec.on_produced("c1", "orders", 0, batch_bytes([(b"k", b"v%d" % i)]), i, 0)
        rec.flush()  # the worker thread has written every callback so far
        time.sleep(0.2)  # longer than the flush interval: everything so far is fsynced
        print("READY", rec.event_count, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=str(REPO)
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
        written = int(line.split()[1])
        assert find_pending(spool_dir) == []  # still alive: its lock keeps sync away
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [pending] = find_pending(spool_dir)
    assert pending.session_id == "killed"
    assert pending.sealed is False
    assert pending.event_count == written == 81
    events = read_spool(pending.path)
    assert verify_chain(events) is None
    assert events[0]["type"] == "session_start" and events[0]["subject"] == "alice"
