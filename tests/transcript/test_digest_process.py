"""DigestProcess: the child computes exactly the in-process digests, and trouble costs nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamctl.kafka.errors import KafkaProtocolError
from streamctl.kafka.records import Compression
from streamctl.transcript import digest_process
from streamctl.transcript.chain import verify_chain
from streamctl.transcript.digest_process import DigestProcess
from streamctl.transcript.digests import record_digests
from streamctl.transcript.recorder import TranscriptRecorder
from streamctl.transcript.spool import read_spool

from .helpers import Summary, Verdict, batch_bytes


def big_batch(n: int = 300, base_offset: int = 0,
              codec: Compression = Compression.NONE) -> bytes:
    values: list[tuple[bytes | None, bytes | None]] = [
        (None if i % 7 == 0 else b"key-%d" % i, None if i % 11 == 0 else b"v" * (i % 200))
        for i in range(n)
    ]
    return bytes(batch_bytes(values, base_offset=base_offset, codec=codec))


@pytest.fixture
def helper() -> Iterator[DigestProcess]:
    process = DigestProcess(min_child_bytes=1)
    assert process.start()
    yield process
    process.close()


def test_child_digests_equal_in_process_digests(helper: DigestProcess) -> None:
    data = big_batch() + big_batch(base_offset=300, codec=Compression.GZIP)
    expected = record_digests(data)
    assert len(expected) == 600
    assert helper.record_digests(data) == expected
    assert helper.record_digests(data + data[:40]) == expected  # truncated tail left out
    assert helper.child_calls == 2
    assert helper.record_digests(b"") == []  # below min_child_bytes: digested here


def test_undecodable_records_raise_the_in_process_error(helper: DigestProcess) -> None:
    data = bytearray(big_batch(3))
    data[61] = 0x7F  # first record's length far beyond the batch
    with pytest.raises(KafkaProtocolError) as in_process:
        record_digests(bytes(data))
    with pytest.raises(KafkaProtocolError) as in_child:
        helper.record_digests(bytes(data))
    assert str(in_child.value) == str(in_process.value)
    assert helper.running  # bad input is an answer, not a failure of the child


def test_a_dead_child_falls_back_to_this_process(helper: DigestProcess) -> None:
    data = big_batch()
    assert helper._proc is not None
    helper._proc.kill()
    helper._proc.wait()
    assert helper.record_digests(data) == record_digests(data)
    assert not helper.running and helper.child_calls == 0
    assert helper.record_digests(data) == record_digests(data)


def test_a_hung_child_is_killed_and_this_process_takes_over(
    helper: DigestProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(digest_process, "EXCHANGE_TIMEOUT", 0.5)
    data = big_batch()
    proc = helper._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)  # alive but never answering
    started = time.monotonic()
    assert helper.record_digests(data) == record_digests(data)
    assert time.monotonic() - started < 5
    assert not helper.running and proc.poll() is not None  # killed and reaped


def test_small_fields_stay_in_this_process() -> None:
    process = DigestProcess()
    assert process.start()
    try:
        small = big_batch(5)
        assert len(small) < process.min_child_bytes
        assert process.record_digests(small) == record_digests(small)
        assert process.child_calls == 0
    finally:
        process.close()


def test_threaded_recorder_digests_in_the_child_and_survives_its_death(tmp_path: Path) -> None:
    rec = TranscriptRecorder(tmp_path, subject="alice", grant_id="g-1", digest_process=True)
    helper = rec._digest_process
    assert helper is not None
    data = big_batch(400)
    assert len(data) >= helper.min_child_bytes
    for i in range(3):
        rec.on_request("c1", Summary(correlation_id=i), Verdict())
        rec.on_produced("c1", "orders", 0, data, i * 400, 0)
    rec.flush()
    assert helper.child_calls == 3
    proc = helper._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for i in range(3, 5):
        rec.on_produced("c1", "orders", 0, data, i * 400, 0)
    rec.seal("closed")
    assert not helper.running  # the worker reaped the child when it stopped
    events = read_spool(rec.path)
    assert verify_chain(events) is None and rec.worker_errors == 0
    produced = [e for e in events if e["type"] == "produced"]
    digests = [d for e in produced for d in e["digests"]]
    assert digests == record_digests(data) * 5
    assert [e["first_offset"] for e in produced if e["part"] == 0] == [i * 400 for i in range(5)]
    assert events[-1]["counts"]["produced_records"] == 2000


def test_a_streamctl_folder_in_the_current_directory_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child imports streamctl from where this process does, not from the cwd."""
    marker = tmp_path / "imported"
    fake = tmp_path / "streamctl" / "transcript"
    fake.mkdir(parents=True)
    (tmp_path / "streamctl" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "digests.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    process = DigestProcess(min_child_bytes=1)
    try:
        assert process.start()
        data = big_batch()
        assert process.record_digests(data) == record_digests(data)
        assert process.child_calls == 1
    finally:
        process.close()
    assert not marker.exists()


def test_an_answer_that_does_not_match_the_batch_headers_is_not_trusted(
    helper: DigestProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = big_batch(50)
    real_exchange = DigestProcess._exchange

    def one_short(proc: object, records: bytes, timeout: float) -> tuple[bytes, bytes]:
        kind, payload = real_exchange(proc, records, timeout)  # type: ignore[arg-type]
        return kind, payload[: -digest_process.HEX_SIZE]

    monkeypatch.setattr(DigestProcess, "_exchange", staticmethod(one_short))
    assert helper.record_digests(data) == record_digests(data)
    assert not helper.running  # a child that answered wrongly is not asked again
