"""The access server is down when a tunnel closes: the transcript stays spooled, then syncs."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.cli.conftest import (
    AccessServer,
    User,
    device_login,
    run_server,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def own_server(kafka: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AccessServer]]:
    """A server this module may stop and restart (a list, so the restarted one is seen)."""
    holder = [start_server(tmp_path_factory.mktemp("restartable") / "srv",
                           bootstrap=kafka.bootstrap)]  # type: ignore[attr-defined]
    yield holder
    stop_server(holder[0])


def test_transcript_is_kept_while_the_server_is_down_and_synced_later(
    own_server: list[AccessServer], kafka: object, tmp_path: Path
) -> None:
    server = own_server[0]
    user = User(tmp_path / "home")
    user.home.mkdir()
    assert device_login(user, server, "alice").code == 0
    topic = f"orders.retry{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)  # type: ignore[attr-defined]
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)  # type: ignore[attr-defined]
    producer.send(topic, b'{"id": 1}').get(timeout=30)
    producer.close()

    # The client reads, then the access server goes away before the tunnel closes.
    client = (
        "import os, signal, socket, time; from kafka import KafkaConsumer;"
        "c = KafkaConsumer(bootstrap_servers=os.environ['STREAMCTL_BOOTSTRAP'],"
        " auto_offset_reset='earliest', consumer_timeout_ms=5000);"
        f"c.subscribe(['{topic}']); n = len(list(c)); c.close();"
        f"os.kill({server.process.pid}, signal.SIGTERM);"
        f"[time.sleep(0.2) for _ in range(100) if socket.socket().connect_ex(('127.0.0.1', {server.url.rsplit(':', 1)[1]})) == 0];"
        "print('read', n)"
    )
    ran = user.run("connect", topic, "--read", "-o", "json", "--exec",
                   f"{sys.executable} -c \"{client}\"")
    server.process.wait(timeout=30)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[-1] == "read 1"
    session_id = json.loads(ran.out.splitlines()[0])["session_id"]
    assert f"transcript {session_id} not uploaded yet" in ran.err
    assert "streamctl sessions sync" in ran.err
    spool = user.data_dir / "spool"
    assert [p.name for p in spool.iterdir() if session_id in p.name]

    # Back up: the next sync uploads it, sealed, and the spool is emptied.
    own_server[0] = run_server(server.folder, server.url)
    synced = user.run("sessions", "sync", "-o", "json")
    assert synced.code == 0, synced.err
    outcome = json.loads(synced.out)
    assert {"session_id": session_id, "sealed": True, "uploaded": True, "error": None} in outcome
    assert not [p for p in spool.iterdir() if session_id in p.name]
    who = user.run("audit", "who-consumed", topic, "0", "0", "-o", "json")
    assert who.code == 0, who.err
    assert session_id in who.out and "alice" in who.out
