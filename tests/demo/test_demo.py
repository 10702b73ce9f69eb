"""`make demo`'s story, run non-interactively on the session broker, with its key lines checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
