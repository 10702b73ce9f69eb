"""An engineer's day through the console script, on a real access server and a real broker.

Alice is refused a write to a high-value topic, asks for an approval, Bob approves,
Alice writes through the tunnel, tails masked records, runs a client with --exec,
and the server's transcripts answer who produced what.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from streamctl.cli.exit_codes import ExitCode
from tests.cli.conftest import STREAMCTL, User

PLANTED_EMAIL = "jane.doe.planted@example.com"
PLANTED_CARD = "4111111111111111"


@pytest.fixture(scope="module")
def people(alice_session: User, bob_session: User) -> dict[str, User]:
    return {"alice": alice_session, "bob": bob_session}


@pytest.fixture(scope="module")
def topics(kafka: object) -> Iterator[dict[str, str]]:
    """A high-value payments topic and a PII orders topic seeded with planted secrets."""
    suffix = uuid.uuid4().hex[:8]
    names = {"payments": f"payments.cli{suffix}", "orders": f"orders.cli{suffix}"}
    for name in names.values():
        kafka.create_topic(name)  # type: ignore[attr-defined]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)  # type: ignore[attr-defined]
    for i in range(3):
        order = {"id": i, "customer": {"email": PLANTED_EMAIL, "name": "Jane"},
                 "payment": {"card": PLANTED_CARD}}
        producer.send(names["orders"], json.dumps(order).encode(),
                      key=f"order-{i}".encode(), headers=[("src", b"seed")])
    producer.flush()
    producer.close()
    yield names


def test_write_to_high_value_topic_needs_approval_then_works(
    people: dict[str, User], topics: dict[str, str]
) -> None:
    alice, bob = people["alice"], people["bob"]
    payments = topics["payments"]
    refused = alice.run("produce", payments, stdin="k1:v1\n")
    assert refused.code == ExitCode.NOT_AUTHORIZED
    assert refused.err_lines[-1].startswith(f"error: writes to {payments} need an approval")
    assert f"run `streamctl request-approval {payments} --write" in refused.err

    waiting = subprocess.Popen(
        [STREAMCTL, "request-approval", payments, "--write", "--for", "20m",
         "--reason", "replay INC-42", "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=alice.env(),
    )
    try:
        approval_id = None
        for _ in range(100):
            listed = bob.run("approvals", "ls", "--reviewable", "-o", "json")
            assert listed.code == 0, listed.err
            mine = [a for a in json.loads(listed.out) if a["topics"] == [payments]]
            if mine:
                approval_id = mine[0]["id"]
                break
            time.sleep(0.3)
        assert approval_id, "bob never saw the request"
        # Alice cannot approve her own request.
        self_review = alice.run("approvals", "approve", approval_id)
        assert self_review.code == ExitCode.NOT_AUTHORIZED
        assert len(self_review.err_lines) == 1
        approved = bob.run("approvals", "approve", approval_id, "--reason", "ok for INC-42")
        assert approved.code == 0, approved.err
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err.decode()
    text = out.decode()
    assert f"Approval {approval_id} approved" in text and "approved by bob" in text
    assert f"next:   streamctl connect {payments} --write --approval {approval_id}" in text

    # The approval is found automatically; key separator and headers apply.
    produced = alice.run("produce", payments, "-K", ":", "-H", "source=cli", "-o", "json",
                         stdin="k1:v1\nk2:v2\nk3:v3\n")
    assert produced.code == 0, produced.err
    offsets = json.loads(produced.out)
    assert [r["offset"] for r in offsets] == [0, 1, 2]

    tailed = alice.run("tail", payments, "--from-beginning", "-o", "json", "--max-messages", "3")
    assert tailed.code == 0, tailed.err
    records = [json.loads(line) for line in tailed.out.splitlines()]
    assert [(r["key"], r["value"], r["headers"]) for r in records] == [
        ("k1", "v1", {"source": "cli"}), ("k2", "v2", {"source": "cli"}),
        ("k3", "v3", {"source": "cli"}),
    ]

    # The server's transcripts say who produced offset 1.
    answer = None
    for _ in range(50):
        who = alice.run("audit", "who-produced", payments, "0", "1", "-o", "json")
        if who.code == 0 and "alice" in who.out:
            answer = who
            break
        time.sleep(0.3)
    assert answer is not None, who.err
    text_answer = alice.run("audit", "who-produced", payments, "0", "1")
    assert "by alice" in text_answer.out


def test_tail_masks_pii_and_connect_exec_runs_a_client(
    people: dict[str, User], topics: dict[str, str]
) -> None:
    alice = people["alice"]
    orders = topics["orders"]
    tailed = alice.run("tail", orders, "--from-beginning", "-o", "json")
    assert tailed.code == 0, tailed.err
    lines = tailed.out.splitlines()
    assert len(lines) == 3  # piped: one JSON object per line
    for line in lines:
        value = json.loads(line)["value"]
        assert value["customer"]["name"] == "Jane"
        assert value["customer"]["email"] != PLANTED_EMAIL
        assert value["payment"]["card"].endswith("1111")
        assert value["payment"]["card"] != PLANTED_CARD
    assert PLANTED_EMAIL not in tailed.out and PLANTED_CARD not in tailed.out

    raw = alice.run("tail", orders, "--offset", "-1", "-o", "raw")
    assert raw.code == 0 and raw.out.count("\n") == 1 and PLANTED_EMAIL not in raw.out

    client = (
        "import os; from kafka import KafkaConsumer, KafkaProducer;"
        "c = KafkaConsumer(bootstrap_servers=os.environ['KAFKA_BOOTSTRAP_SERVERS'],"
        " auto_offset_reset='earliest', consumer_timeout_ms=5000);"
        f"c.subscribe(['{orders}']);"
        "vals = [m.value.decode() for m in c]; c.close();"
        "p = KafkaProducer(bootstrap_servers=os.environ['STREAMCTL_BOOTSTRAP'], retries=0);"
        "f = p.send('ORDERS', b'x');\n"
        "try:\n f.get(timeout=30); w = 'written'\n"
        "except Exception as e:\n w = type(e).__name__\n"
        f"print(os.environ['STREAMCTL_BOOTSTRAP'], len(vals), any('{PLANTED_EMAIL}' in v for v in vals), w)"
    ).replace("ORDERS", orders)
    ran = alice.run("connect", orders, "--read", "-o", "json", "--exec",
                    f"{sys.executable} -c \"{client}\"")
    assert ran.code == 0, ran.err
    info = json.loads(ran.out.splitlines()[0])  # connect printed where to connect first
    bootstrap, count, leaked, write = ran.out.splitlines()[-1].split()
    assert bootstrap == info["bootstrap"] and bootstrap.startswith("127.0.0.1:")
    assert count == "3" and leaked == "False"
    assert write == "TopicAuthorizationFailedError"  # the tunnel refused the write in-protocol
    # The session's transcript was uploaded on exit and replays the refusal with its reason.
    played = alice.run("sessions", "play", info["session_id"], "--speed", "0")
    assert played.code == 0, played.err
    refusals = [line for line in played.out.splitlines() if "REFUSED" in line]
    assert refusals and "Produce" in refusals[0] and orders in refusals[0]
    assert any("fetched 3 record(s)" in line for line in played.out.splitlines())

    refused = alice.run("connect", orders, "--write")
    assert refused.code == ExitCode.NOT_AUTHORIZED


def test_sessions_are_listed_and_replayed(people: dict[str, User],
                                          topics: dict[str, str]) -> None:
    alice = people["alice"]
    listed = alice.run("sessions", "ls", "-o", "json")
    assert listed.code == 0, listed.err
    sessions = json.loads(listed.out)
    assert sessions, "no transcript reached the server"
    session_id = sessions[0].get("session_id") or sessions[0].get("id")
    shown = alice.run("sessions", "show", session_id, "-o", "json")
    assert shown.code == 0, shown.err
    events = json.loads(shown.out)["events"]
    assert events[0]["type"] == "session_start" and events[-1]["type"] == "session_end"
    played = alice.run("sessions", "play", session_id, "--speed", "0")
    assert played.code == 0, played.err
    assert "session started by alice" in played.out and "session ended" in played.out
    synced = alice.run("sessions", "sync")
    assert synced.code == 0 and "Nothing to upload." in synced.out


def test_connect_runs_until_ctrl_c_and_status_lists_the_tunnel(
    people: dict[str, User], topics: dict[str, str]
) -> None:
    alice = people["alice"]
    orders = topics["orders"]
    process = subprocess.Popen(
        [STREAMCTL, "connect", orders, "--read", "--ttl", "10m", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=alice.env(),
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["topics"] == [orders] and info["operations"] == ["read"]
        status = json.loads(alice.run("status", "-o", "json").out)
        assert [t["bootstrap"] for t in status["tunnels"]] == [info["bootstrap"]]
        assert info["grant_id"] in [g["grant_id"] for g in status["active_grants"]]
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(orders, bootstrap_servers=info["bootstrap"],
                                 auto_offset_reset="earliest", consumer_timeout_ms=5000)
        values = [m.value.decode() for m in consumer]
        consumer.close()
        assert len(values) == 3 and not any(PLANTED_EMAIL in v for v in values)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    assert "Tunnel closed." in err.decode()
    assert alice.run("status", "-o", "json").out.count(info["bootstrap"]) == 0


def test_tail_from_time_with_keys_and_headers(people: dict[str, User],
                                              topics: dict[str, str]) -> None:
    alice = people["alice"]
    out = alice.run("tail", topics["orders"], "--from-time", "-1h", "--partition", "0",
                    "--print-keys", "--print-headers", "--max-messages", "2")
    assert out.code == 0, out.err
    lines = out.out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("0:0 key=order-0 headers=src=seed {")
    assert PLANTED_EMAIL not in out.out
    missing = alice.run("tail", topics["orders"], "--partition", "7")
    assert missing.code == ExitCode.NOT_FOUND and "has no partition 7" in missing.err


def test_tail_follow_prints_records_as_they_arrive(people: dict[str, User], kafka: object) -> None:
    alice = people["alice"]
    topic = f"orders.follow{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)  # type: ignore[attr-defined]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)  # type: ignore[attr-defined]
    producer.send(topic, b'{"n": 1}').get(timeout=30)
    process = subprocess.Popen(
        [STREAMCTL, "tail", topic, "--from-beginning", "--follow", "--max-messages", "2",
         "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=alice.env(),
    )
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["value"] == {"n": 1}
        # Only now does the second record exist: --follow waits for it.
        producer.send(topic, b'{"n": 2}').get(timeout=30)
        out, err = process.communicate(timeout=60)
    finally:
        producer.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    assert json.loads(out.decode().splitlines()[0])["value"] == {"n": 2}


def test_connect_exec_fills_in_the_bootstrap_for_kcat(people: dict[str, User],
                                                     topics: dict[str, str]) -> None:
    """`--exec 'kcat -b $STREAMCTL_BOOTSTRAP -L'` works as written, with no shell involved."""
    orders = topics["orders"]
    ran = people["alice"].run("connect", orders, "--read", "-o", "json", "--exec",
                              "kcat -b $STREAMCTL_BOOTSTRAP -L -t " + orders)
    assert ran.code == 0, ran.err
    bootstrap = json.loads(ran.out.splitlines()[0])["bootstrap"]
    assert f"topic \"{orders}\"" in ran.out
    # every broker kcat learned of is a local tunnel listener, never the real broker
    brokers = re.findall(r"broker \d+ at (\S+)", ran.out)
    assert brokers and all(b.startswith("127.0.0.1:") for b in brokers)
    assert bootstrap.split(":")[0] == "127.0.0.1"


def test_revoking_the_grant_ends_a_running_tunnel(people: dict[str, User],
                                                  topics: dict[str, str]) -> None:
    """`grant revoke` on the server ends the tunnel using it at the next status poll."""
    alice = people["alice"]
    orders = topics["orders"]
    process = subprocess.Popen(
        [STREAMCTL, "connect", orders, "--read", "--ttl", "10m", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=alice.env(STREAMCTL_GRANT_POLL_SECONDS="0.5"),
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        revoked = alice.run("grant", "revoke", info["grant_id"])
        assert revoked.code == 0, revoked.err
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert f"grant {info['grant_id']} was revoked" in err.decode()
    assert alice.run("status", "-o", "json").out.count(info["bootstrap"]) == 0
