"""Long-running server processes (Kafka JVMs, PostgreSQL) that never outlive the test run.

Each process is started through `supervisor.py` in its own session, so a Ctrl-C in the terminal
reaches pytest (which then stops it in order) and not the server directly; the supervisor kills
the server if pytest dies without cleaning up. Every live process is also stopped at interpreter
exit and on SIGTERM.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

SUPERVISOR = Path(__file__).with_name("supervisor.py")

_live: set[SupervisedProcess] = set()
_live_lock = threading.Lock()


def free_port() -> int:
    """Ask the kernel for a loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SupervisedProcess:
    """One server process behind a watchdog; stop() is idempotent."""

    def __init__(
        self,
        command: list[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stop_signal: str = "TERM",
        grace: float = 20.0,
        user: str | None = None,
    ) -> None:
        self.command = command
        self.log_path = log_path
        self.grace = grace
        supervisor_cmd = [
            sys.executable,
            str(SUPERVISOR),
            "--parent",
            str(os.getpid()),
            "--stop-signal",
            stop_signal,
            "--grace",
            str(grace),
        ]
        if user is not None:
            supervisor_cmd += ["--user", user]
        self._log: IO[bytes] = open(log_path, "ab")
        self.popen = subprocess.Popen(
            [*supervisor_cmd, "--", *command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with _live_lock:
            _live.add(self)

    @property
    def running(self) -> bool:
        """True while the supervisor (and so the server) is alive."""
        return self.popen.poll() is None

    def request_stop(self) -> None:
        """Ask the server to stop without waiting (to stop several at once)."""
        if self.popen.poll() is None:
            self.popen.terminate()

    def stop(self, grace: float | None = None) -> None:
        """Stop gracefully, then kill the whole process group if the server is stuck."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=self.grace + 5 if grace is None else grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()
        self._log.close()
        with _live_lock:
            _live.discard(self)


def stop_all(grace: float = 10.0) -> None:
    """Stop every server this process started, all at once (used at exit and on SIGTERM)."""
    with _live_lock:
        processes = list(_live)
    for process in processes:
        process.request_stop()
    deadline = time.monotonic() + grace
    for process in processes:
        process.stop(grace=max(0.0, deadline - time.monotonic()))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Stop the servers, then unwind like Ctrl-C so fixtures and finally blocks clean up."""
    stop_all()
    raise KeyboardInterrupt


atexit.register(stop_all)
if threading.current_thread() is threading.main_thread() and (
    signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
):
    signal.signal(signal.SIGTERM, _on_sigterm)
