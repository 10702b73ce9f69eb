"""`make demo`'s story, run non-interactively on the session broker, with its key lines checked."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer

REPO = Path(__file__).resolve().parents[2]


def test_scripted_demo_tells_the_whole_story(kafka, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "demo.py"),
            "run",
            "--bootstrap",
            kafka.bootstrap,
            "--workdir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # login by device flow, for both people
    assert "Logged in" in out and "as alice" in out and "as bob" in out
    # tail: masked values, never the planted ones
    assert "ada@example.com" not in out and "4111111111111111" not in out
    assert re.search(r"\*+1111", out), out
    # the refusal without approval, the approval, the write under it
    assert "writes to payments need an approval" in out
    assert "Approved ap_" in out
    assert '"topic": "payments"' in out
    # immutable topic: refused by the server and by the tunnel with a Kafka error
    assert "immutable" in out and "DeleteTopics refused: PolicyViolationError" in out
    # the replay and who-produced
    assert re.search(r"produced 1 record\(s\) to payments\[0\] (at )?offset 0", out), out
    assert "payments[0]@0 produced by alice" in out
    # each step shows the command a person can repeat
    for command in (
        "streamctl login",
        "streamctl tail orders",
        "streamctl request-approval",
        "streamctl approvals approve",
        "streamctl sessions play",
        "streamctl audit who-produced",
    ):
        assert command in out


def test_demo_up_leaves_everything_running_and_down_stops_it(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1", "STREAMCTL_DEMO_DIR": str(tmp_path / "demo")}
    demo = [sys.executable, str(REPO / "scripts" / "demo.py")]
    up = subprocess.run([*demo, "up"], capture_output=True, text=True, timeout=300, env=env)
    state_file = tmp_path / "demo" / "up" / "state.json"
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads(state_file.read_text())
        assert state["server_url"] in up.stdout and "make demo-down" in up.stdout
        assert oct(state_file.stat().st_mode & 0o777) == "0o600"  # it holds the demo passwords
        assert httpx.get(f"{state['server_url']}/.well-known/jwks.json", timeout=10).status_code == 200
        consumer = KafkaConsumer(bootstrap_servers=state["bootstrap"])
        assert {"orders", "payments", "audit-events"} <= consumer.topics()
        consumer.close()
        again = subprocess.run([*demo, "up"], capture_output=True, text=True, timeout=60, env=env)
        assert again.returncode == 1 and "already up" in again.stdout
    finally:
        down = subprocess.run([*demo, "down"], capture_output=True, text=True, timeout=120, env=env)
    assert down.returncode == 0 and "demo stopped" in down.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{state['server_url']}/.well-known/jwks.json", timeout=5)
    host, port = state["bootstrap"].split(":")
    with socket.socket() as sock:
        assert sock.connect_ex((host, int(port))) != 0  # the broker is gone too
