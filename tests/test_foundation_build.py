"""The build entry points: CI runs exactly `make test`, and Kafka jars come from the cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_make_test() -> None:
    commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "make test" in commands
    words = {word for c in commands for word in c.split()}
    assert not words & {"pytest", "pip", "ruff", "mypy"}  # everything goes through make


def test_second_fetch_reuses_the_cached_jars() -> None:
    # `make test` fetched the jars before pytest started, so this run must find them cached.
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch-kafka.sh")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "cached in" in done.stdout
    assert "fetching" not in done.stdout
