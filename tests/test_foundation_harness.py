"""The harness cleans up after itself: no server outlives a killed or terminated test run, and a
failing test that used a broker shows the broker's log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]

# A stand-in for a test run: starts one supervised server (`sleep`), prints its pid, waits.
RUN_WITH_SERVER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from tests.harness.processes import SupervisedProcess
    server = SupervisedProcess(["sleep", "300"], log_path=Path(sys.argv[1]))
    try:
        print(server.popen.pid, flush=True)
        threading.Event().wait()
    finally:
        server.stop()
    """
)


def _start_run(tmp_path: Path) -> tuple[subprocess.Popen[str], psutil.Process]:
    """Start the stand-in run; return it and the server process under its supervisor."""
    run = subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_SERVER, str(tmp_path / "server.log")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    supervisor = psutil.Process(int(run.stdout.readline()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Right after fork the child is still a copy of the supervisor; wait for the exec.
        children = [c for c in supervisor.children() if c.name() == "sleep"]
        if children:
            return run, children[0]
        time.sleep(0.05)
    raise AssertionError(f"no server under the supervisor: {supervisor.children()}")


def _gone(process: psutil.Process, within: float = 30.0) -> bool:
    try:
        process.wait(timeout=within)
    except psutil.TimeoutExpired:
        return False
    return True


def test_server_dies_when_the_test_run_is_killed(tmp_path: Path) -> None:
    run, server = _start_run(tmp_path)
    run.kill()  # SIGKILL: no atexit, no finally; only the watchdog can clean up
    run.wait()
    try:
        assert _gone(server), "server outlived a SIGKILLed test run"
    finally:
        if server.is_running():
            server.kill()


def test_server_stops_when_the_test_run_gets_sigterm(tmp_path: Path) -> None:
    run, server = _start_run(tmp_path)
    run.send_signal(signal.SIGTERM)
    try:
        assert _gone(server), "server outlived a SIGTERMed test run"
        assert run.wait(timeout=30) != 0
    finally:
        if server.is_running():
            server.kill()


def test_server_stops_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    run, server = _start_run(tmp_path)
    try:
        psutil.Process(server.ppid()).kill()  # the watchdog itself dies hard
        assert _gone(server), "server outlived its killed supervisor"
    finally:
        run.kill()
        run.wait()
        if server.is_running():
            server.kill()


INNER_TEST = textwrap.dedent(
    """
    import pytest
    from tests import conftest
    from tests.harness.kafka import KafkaCluster

    @pytest.fixture
    def kafka():
        # A broker whose log exists but whose JVM is not needed to test the report hook
        # (test_single_node_shape shows the real broker writes its log there).
        cluster = KafkaCluster(1)
        cluster.log_path.write_text("[t] INFO planted broker log line (kafka.server.Test)\\n")
        conftest._started["kafka"].append(cluster)
        yield cluster
        cluster.stop()

    def test_fails(kafka):
        assert kafka.bootstrap == "no such broker"

    def test_passes(kafka):
        assert kafka.nodes == [1]
    """
)


def test_failing_test_shows_the_broker_log(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-rA",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 failed, 1 passed" in result.stdout
    assert result.stdout.count("kafka broker log (tail)") == 1
    assert "planted broker log line" in result.stdout
    assert "server.log ---" in result.stdout


def test_server_started_from_a_thread_outlives_the_thread(tmp_path: Path) -> None:
    from tests.harness.processes import SupervisedProcess

    started: list[SupervisedProcess] = []
    thread = threading.Thread(
        target=lambda: started.append(
            SupervisedProcess(["sleep", "300"], log_path=tmp_path / "server.log")
        )
    )
    thread.start()
    thread.join()
    (server,) = started
    try:
        time.sleep(1.0)  # a thread-bound death signal would have fired by now
        assert server.running
    finally:
        server.stop()
    assert not server.running
