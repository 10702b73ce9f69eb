"""TranscriptRecorder: events per callback, digests/offsets from record bytes, seal, no secrets."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from streamctl.kafka.records import Compression
from streamctl.transcript.chain import chain_head, verify_chain
from streamctl.transcript.events import record_digest
from streamctl.transcript.recorder import (
    MAX_DIGESTS_PER_EVENT,
    WRITE_GROUP,
    TranscriptRecorder,
    describe_fetched,
    describe_produced,
)
from streamctl.transcript.spool import find_pending, read_spool

from .helpers import Summary, Verdict, batch_bytes, fetched_partition


def recorder(tmp_path: Path, **kw: object) -> TranscriptRecorder:
    return TranscriptRecorder(
        tmp_path, subject="alice", grant_id="g-1", session_id="s1", background_sync=False, threaded=False,
        **kw,  # type: ignore[arg-type]
    )


def test_produced_records_get_a_digest_and_their_broker_offset_each() -> None:
    values = [(b"k%d" % i, b"value-%d" % i) for i in range(5)]
    described = describe_produced(batch_bytes(values, codec=Compression.GZIP), 120, 0)
    assert described["record_count"] == 5
    assert described["digests"] == [record_digest(k, v) for k, v in values]
    assert (described["first_offset"], described["last_offset"]) == (120, 124)
    refused = describe_produced(batch_bytes(values), -1, 29)
    assert "first_offset" not in refused and refused["record_count"] == 5


def test_fetched_offsets_come_from_batch_headers() -> None:
    data = (
        batch_bytes([(None, b"a"), (None, b"b")], base_offset=10, codec=Compression.ZSTD)
        + batch_bytes([(None, b"")], base_offset=12, control=True)
        + batch_bytes([(None, b"c")] * 3, base_offset=13, codec=Compression.LZ4)
    )
    truncated = data + batch_bytes([(None, b"d")], base_offset=16)[:30]
    described = describe_fetched(fetched_partition(truncated))
    assert (described["first_offset"], described["last_offset"]) == (10, 15)
    assert described["record_count"] == 5  # the control record is not a data record
    assert described["bytes"] == len(truncated)


def test_undecodable_records_are_described_not_raised() -> None:
    bad = b"\x00" * 12 + b"\x00\x00\x00\x03" + b"\x02" + b"\x00" * 20
    assert "undecodable" in describe_produced(bad, 0, 0)
    broken = b"\x00" * 8 + b"\x00\x00\x00\x05" + b"\x02" * 8
    assert "undecodable" in describe_fetched(fetched_partition(broken))


def test_a_session_records_every_callback_and_seals(tmp_path: Path) -> None:
    rec = recorder(tmp_path, cluster="local", approval_id="ap-1")
    rec.on_request("c1", Summary(client_id="rdkafka"), Verdict())
    rec.on_produced("c1", "orders", 0, batch_bytes([(b"k", b"v")] * 3), 7, 0)
    rec.on_request("c2", Summary(kind="delete", api_key=20), Verdict(False, 29, "immutable"))
    rec.on_fetched("c2", "orders",
                   fetched_partition(batch_bytes([(b"k", b"v")] * 3, base_offset=7)), {"email": 2})
    rec.on_fetched("c2", "orders", fetched_partition(b""), {})  # idle poll: not kept
    rec.on_close("c1", "client closed")
    rec.seal("expired")
    rec.seal("twice")  # idempotent
    rec.on_close("c2", "late")  # after the seal: ignored, never raises
    events = read_spool(rec.path)
    assert [e["type"] for e in events] == [
        "session_start", "request", "produced", "request", "fetched", "close", "session_end",
    ]
    assert verify_chain(events) is None
    start, req, produced, refused, fetched, close, end = events
    assert start["subject"] == "alice" and start["grant_id"] == "g-1"
    assert start["approval_id"] == "ap-1"
    assert req["client_id"] == "rdkafka" and req["operation"] == "write" and req["allowed"]
    assert refused["allowed"] is False and refused["reason"] == "immutable"
    assert refused["error_code"] == 29
    assert produced["first_offset"] == 7 and produced["last_offset"] == 9
    assert fetched["mask_counts"] == {"email": 2} and fetched["record_count"] == 3
    assert close["reason"] == "client closed"
    assert end["reason"] == "expired"
    assert end["head"] == chain_head(events[:-1])
    assert end["counts"] == {
        "requests": 2, "refused": 1, "produced_records": 3, "produced_bytes": len(
            batch_bytes([(b"k", b"v")] * 3)),
        "fetched_records": 3, "fetched_bytes": produced["bytes"], "connections": 2,
    }
    [pending] = find_pending(tmp_path)
    assert pending.sealed is True


def test_context_manager_seals_with_error_reason(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), recorder(tmp_path) as rec:
        raise RuntimeError("boom")
    assert read_spool(rec.path)[-1]["reason"] == "error"


SECRETS = [b"4111111111111111", b"alice@example.com", b"s3cr3t-password", b"078-05-1120"]


def test_no_planted_secret_or_record_value_reaches_the_spool(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    values = [
        (b"user-" + s, json.dumps({"card": s.decode(), "note": "hello world"}).encode())
        for s in SECRETS
    ]
    for codec in Compression:
        rec.on_produced("c1", "payments", 1, batch_bytes(values, codec=codec), 0, 0)
        rec.on_fetched("c1", "payments", fetched_partition(batch_bytes(values, codec=codec), 1),
                       {"card": 4})
    rec.on_request("c1", Summary(topics=("payments",)), Verdict())
    rec.seal("closed")
    spooled = rec.path.read_bytes()
    assert spooled.count(b'"type":"produced"') == len(Compression)
    for secret in [*SECRETS, b"hello world", b"user-"]:
        assert secret not in spooled


def test_a_failed_spool_write_leaves_the_chain_unbroken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = recorder(tmp_path)
    real_append = rec._writer.append
    calls = {"n": 0}

    def flaky(event: dict[str, object], canonical: bytes | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_append(event, canonical)

    monkeypatch.setattr(rec._writer, "append", flaky)
    rec.on_request("c1", Summary(), Verdict())
    with pytest.raises(OSError):
        rec.on_request("c1", Summary(correlation_id=2), Verdict())
    rec.on_request("c1", Summary(correlation_id=3), Verdict())
    rec.seal("closed")
    events = read_spool(rec.path)
    assert verify_chain(events) is None
    assert [e.get("correlation_id") for e in events if e["type"] == "request"] == [1, 3]
    assert events[-1]["counts"]["lost_events"] == 1


def test_a_large_produced_batch_is_written_in_groups_and_a_refused_group_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One produced batch of many events goes out a group of lines per write; a group the
    disk refuses is counted lost and leaves the chain on disk unbroken."""
    rec = recorder(tmp_path)
    real = rec._writer.append_lines
    groups: list[int] = []

    def flaky(lines: list[bytes]) -> None:
        groups.append(len(lines))
        if len(groups) == 2:
            raise OSError(28, "No space left on device")
        real(lines)

    monkeypatch.setattr(rec._writer, "append_lines", flaky)
    per_group = WRITE_GROUP * MAX_DIGESTS_PER_EVENT
    values = [(None, b"v%d" % i) for i in range(per_group + 10)]
    with pytest.raises(OSError):
        rec.on_produced("c1", "orders", 0, batch_bytes(values), 0, 0)
    assert groups == [WRITE_GROUP, 1]  # the second (last) group was refused
    rec.on_produced("c1", "orders", 0, batch_bytes(values[:3]), len(values), 0)
    rec.seal("closed")
    events = read_spool(rec.path)
    assert verify_chain(events) is None
    produced = [e for e in events if e["type"] == "produced"]
    assert len(produced) == WRITE_GROUP + 1  # the first group, then the later batch
    assert sum(len(e["digests"]) for e in produced) == per_group + 3
    assert events[-1]["counts"]["lost_events"] == 1


def test_threaded_recorder_keeps_every_callback_in_order(tmp_path: Path) -> None:
    rec = TranscriptRecorder(tmp_path, subject="alice", grant_id="g-1", max_queued=8)
    data = batch_bytes([(b"k", b"v")] * 10)
    for i in range(500):
        rec.on_request("c1", Summary(correlation_id=i), Verdict())
        rec.on_produced("c1", "orders", 0, data, i * 10, 0)
    rec.flush()
    assert rec.event_count == 1001  # every callback is in the file before seal
    rec.seal("closed")
    events = read_spool(rec.path)
    assert verify_chain(events) is None and rec.worker_errors == 0
    requests = [e["correlation_id"] for e in events if e["type"] == "request"]
    assert requests == list(range(500))
    assert [e["first_offset"] for e in events if e["type"] == "produced"] == [
        i * 10 for i in range(500)]
    assert all(a["ts"] <= b["ts"] for a, b in itertools.pairwise(events))
