"""Starting and ending a tunnel: loopback-only by default, clear start errors, revocation."""

from __future__ import annotations

import socket
import time

import pytest
from kafka import KafkaProducer
from kafka import errors as Errors

from streamctl.tunnel.engine import REMOTE_BIND_WARNING, Tunnel, TunnelError, TunnelThread
from tests.policy.grants import make_grant
from tests.tunnel.helpers import tunnel_for


def test_binding_beyond_loopback_needs_the_explicit_flag() -> None:
    with pytest.raises(TunnelError, match=r"127\.0\.0\.1"):
        Tunnel(make_grant(), None, listen_host="0.0.0.0")
    notices: list[tuple[str, str]] = []
    tunnel = Tunnel(make_grant(), None, listen_host="0.0.0.0", allow_remote_bind=True,
                    advertised_host="127.0.0.1",
                    on_notice=lambda level, text: notices.append((level, text)))
    with TunnelThread(tunnel) as handle:
        assert handle.bootstrap is not None and handle.bootstrap.startswith("127.0.0.1:")
    assert ("warning", REMOTE_BIND_WARNING) in notices


def test_start_errors_are_tunnel_errors() -> None:
    expired = make_grant(ttl=-1)
    with pytest.raises(TunnelError, match="expired"):
        TunnelThread(Tunnel(expired, None)).start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TunnelError, match="cannot listen"):
            TunnelThread(Tunnel(make_grant(), None, bootstrap_port=port)).start()


def test_revocation_refuses_then_stops(kafka, unique_topic) -> None:
    kafka.create_topic(unique_topic)
    notices: list[tuple[str, str]] = []
    options = {"expiry_grace": 3.0, "on_notice": lambda lv, tx: notices.append((lv, tx))}
    with tunnel_for(kafka, options, topics=(unique_topic,), ops=("write",)) as t:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, retries=0, max_block_ms=15000)
        try:
            producer.send(unique_topic, b"before").get(timeout=30)
            t.revoke("grant g-test was revoked by the access server")
            time.sleep(0.5)
            with pytest.raises(Errors.TopicAuthorizationFailedError):
                producer.send(unique_topic, b"after").get(timeout=10)
        finally:
            producer.close(timeout=2)
        assert t.wait(timeout=20)
        assert t.tunnel.stop_reason is not None and "revoked" in t.tunnel.stop_reason
    assert any("revoked" in text for level, text in notices if level == "error")
