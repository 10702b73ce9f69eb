"""Issue 9 end to end: a real tunnel session recorded, uploaded, and asked who produced/consumed.

confluent-kafka produces 500 records and kafka-python consumes them through the tunnel on
the harness broker, with one request refused; the transcript goes to an in-process access
server (first while it is unreachable, then on a later sync) and its answers name the
right subject, session and record.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer

from streamctl.policy.grant import Grant
from streamctl.transcript.events import record_digest
from streamctl.transcript.recorder import TranscriptRecorder
from streamctl.transcript.spool import find_pending
from streamctl.transcript.upload import UploadError, sync_pending, upload_spool
from streamctl.tunnel.engine import Tunnel, TunnelThread
from tests.harness.kafka import KafkaCluster
from tests.server.part2 import ClientTransport, running_api, sqlite_url


def test_recorded_session_answers_who_produced_and_consumed(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    topic = f"sandbox.e2e-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=2)
    spool = tmp_path / "spool"
    folder = tmp_path / "server"
    with running_api(folder, sqlite_url(folder)) as api:
        issued = api.grant("alice", [topic], ["read", "write", "describe"])
        assert issued.status_code == 201, issued.text
        grant = Grant.from_claims(issued.json()["claims"])
        recorder = TranscriptRecorder(spool, subject=grant.subject, grant_id=grant.grant_id,
                                      flush_interval=0.2)
        produced: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        consumed: list[tuple[int, int]] = []
        tunnel = Tunnel(grant, None, observer=recorder, upstream_bootstrap=kafka.bootstrap)
        with TunnelThread(tunnel) as handle:
            bootstrap = handle.bootstrap
            assert bootstrap is not None

            def delivered(err: object, msg: object) -> None:
                assert err is None, err
                produced[(msg.partition(), msg.offset())] = (msg.key(), msg.value())  # type: ignore[attr-defined]

            producer = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                                 "linger.ms": 5})
            for i in range(500):
                value = json.dumps({"n": i, "card": "4111111111111111"}).encode()
                producer.produce(topic, key=b"k%d" % i, value=value, on_delivery=delivered)
            assert producer.flush(60) == 0
            assert len(produced) == 500

            consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                                     auto_offset_reset="earliest", consumer_timeout_ms=10000,
                                     group_id=None, enable_auto_commit=False)
            deadline = time.monotonic() + 60
            while len(consumed) < 500 and time.monotonic() < deadline:
                for message in consumer:
                    consumed.append((message.partition, message.offset))
                    if len(consumed) == 500:
                        break
            consumer.close()
            assert len(consumed) == 500

            admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
            refused = admin.delete_topics([topic], operation_timeout=10)[topic]
            try:
                refused.result(timeout=30)
                raise AssertionError("deleting the topic should have been refused")
            except KafkaException:
                pass
            del producer, admin  # let librdkafka go before the tunnel does
        recorder.seal(tunnel.stop_reason or "closed")

        # The access server is unreachable when the tunnel closes: the spool stays.
        down = ClientTransport(api, "alice", fail_after=0)
        try:
            upload_spool(recorder.path, down)
            raise AssertionError("upload to an unreachable server must fail")
        except UploadError:
            pass
        [pending] = find_pending(spool)
        assert pending.sealed and pending.session_id == recorder.session_id
        # ... and the next command syncs it.
        [outcome] = sync_pending(spool, ClientTransport(api, "alice"))
        assert outcome.uploaded and find_pending(spool) == []

        info = api.get("alice", f"/v1/sessions/{recorder.session_id}").json()
        assert info["status"] == "sealed" and info["verified"]
        assert info["counts"]["produced_records"] == 500
        assert info["counts"]["refused"] >= 1
        for (partition, offset), (key, value) in list(sorted(produced.items()))[::97]:
            who = api.get("alice", "/v1/audit/produced",
                          params={"topic": topic, "partition": partition, "offset": offset})
            [match] = who.json()["matches"]
            assert match["subject"] == "alice" and match["session_id"] == recorder.session_id
            assert match["record_digest"] == record_digest(key, value)
        for partition, offset in consumed[::89]:
            who = api.get("alice", "/v1/audit/consumed",
                          params={"topic": topic, "partition": partition, "offset": offset})
            sessions = {m["session_id"] for m in who.json()["matches"]}
            assert sessions == {recorder.session_id}
        events = api.get("alice", f"/v1/sessions/{recorder.session_id}/events").json()["events"]
        refusals = [e for e in events if e["type"] == "request" and not e["allowed"]]
        assert any(e["operation"] == "delete" and e["reason"] for e in refusals), refusals
        stored = json.dumps(events)
        assert "4111111111111111" not in stored and '"n": 7' not in stored


TUNNEL_PROCESS = """
import json, sys, time
from pathlib import Path
from streamctl.policy.grant import Grant
from streamctl.transcript.recorder import TranscriptRecorder
from streamctl.tunnel.engine import Tunnel, TunnelThread

claims, spool, upstream = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
grant = Grant.from_claims(claims)
recorder = TranscriptRecorder(spool, subject=grant.subject, grant_id=grant.grant_id,
                              flush_interval=0.2)
with TunnelThread(Tunnel(grant, None, observer=recorder, upstream_bootstrap=upstream)) as t:
    print(t.bootstrap, recorder.session_id, flush=True)
    time.sleep(600)
"""


def test_tunnel_killed_mid_session_is_uploaded_later_unsealed(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    topic = f"sandbox.kill-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    spool = tmp_path / "spool"
    folder = tmp_path / "server"
    repo = Path(__file__).resolve().parents[2]
    with running_api(folder, sqlite_url(folder)) as api:
        issued = api.grant("alice", [topic], ["read", "write", "describe"])
        assert issued.status_code == 201, issued.text
        proc = subprocess.Popen(
            [sys.executable, "-c", TUNNEL_PROCESS, json.dumps(issued.json()["claims"]),
             str(spool), kafka.bootstrap], stdout=subprocess.PIPE, text=True, cwd=str(repo))
        try:
            assert proc.stdout is not None
            bootstrap, session_id = proc.stdout.readline().split()
            offsets: list[int] = []
            producer = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
            for i in range(100):
                producer.produce(topic, value=b"v%d" % i,
                                 on_delivery=lambda err, msg: offsets.append(msg.offset()))
            assert producer.flush(60) == 0 and len(offsets) == 100
            del producer
            time.sleep(1.0)  # longer than the flush interval
            assert find_pending(spool) == []  # alive: its spool is locked
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        [pending] = find_pending(spool)
        assert pending.session_id == session_id and pending.sealed is False
        [outcome] = sync_pending(spool, ClientTransport(api, "alice"))
        assert outcome.uploaded and not outcome.sealed
        info = api.get("alice", f"/v1/sessions/{session_id}").json()
        assert info["status"] == "unsealed" and info["verified"]
        who = api.get("alice", "/v1/audit/produced",
                      params={"topic": topic, "partition": 0, "offset": max(offsets)}).json()
        [match] = who["matches"]
        assert match["session_id"] == session_id and match["session_status"] == "unsealed"
        assert match["record_digest"] == record_digest(None, b"v99")
