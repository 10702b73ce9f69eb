"""Webhooks: the receiver sees approval creation and decision, also after being down at first."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.server.helpers import free_port
from tests.server.part2 import running_api, sqlite_url


class Receiver:
    """A real HTTP endpoint collecting JSON posts (started late, to play 'down')."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_webhook_sees_create_and_decision_after_being_down(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/approvals"
    folder = tmp_path / "server"
    webhooks = {"urls": [url], "backoff_seconds": 0.3, "max_attempts": 10}
    with running_api(folder, sqlite_url(folder), webhooks=webhooks) as api:
        dispatcher = api.client.app.state.webhooks  # type: ignore[attr-defined]
        ap = api.approval(reason="hotfix for INC-7", reviewers=["bob"]).json()
        wait_for(lambda: dispatcher.failed_attempts >= 1)  # nobody listening yet
        receiver = Receiver(port)
        try:
            wait_for(lambda: len(receiver.received) >= 1)
            created = receiver.received[0]
            assert created["event"] == "approval.created"
            assert created["approval_id"] == ap["id"]
            assert "alice requests write on payments" in created["text"]
            assert "hotfix for INC-7" in created["text"] and "bob" in created["text"]
            assert f"streamctl approvals approve {ap['id']}" in created["text"]
            api.review("bob", ap["id"], reason="go ahead")
            wait_for(lambda: len(receiver.received) >= 2)
            decided = receiver.received[1]
            assert decided["event"] == "approval.decided" and decided["status"] == "approved"
            assert decided["reviewer"] == "bob"
            assert "bob approved" in decided["text"] and "go ahead" in decided["text"]
            # the receiver records a post before its answer reaches the dispatcher
            wait_for(lambda: dispatcher.delivered == 2)
        finally:
            receiver.close()
