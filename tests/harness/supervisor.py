"""Watchdog that runs one server process and kills it when the test run that wanted it dies.

Run as a script (standard library only, so it works without the package on sys.path):

    python supervisor.py --parent PID [--stop-signal TERM] [--grace 15] [--user NAME] -- CMD...

It starts CMD as its child with PR_SET_PDEATHSIG=SIGKILL (so the child dies if the supervisor is
killed outright), polls the parent pid, and stops the child (stop signal, then SIGKILL after the
grace period) when the parent disappears or when the supervisor itself receives SIGTERM/SIGINT.
Its exit status is the child's.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import pwd
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the process that forked it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _child_setup(user: str | None) -> None:
    """Drop privileges (when asked) before arming the death signal, which setuid would clear."""
    if user is not None:
        entry = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        os.environ["HOME"] = entry.pw_dir
    _die_with_parent()


def main() -> int:
    """Start the child and watch both ends until one of them goes away."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--stop-signal", default="TERM")
    parser.add_argument("--grace", type=float, default=15.0)
    parser.add_argument("--user", default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    stop_signal = signal.Signals[f"SIG{args.stop_signal}"]
    # No death signal for the supervisor itself: the kernel ties it to the *thread* that forked
    # us, and a test may start a server from a short-lived thread. Polling getppid() instead.

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_stop)

    child = subprocess.Popen(command, preexec_fn=lambda: _child_setup(args.user))
    while child.poll() is None:
        if stopping or os.getppid() != args.parent:
            break
        time.sleep(0.2)
    if child.poll() is None:
        child.send_signal(stop_signal)
        deadline = time.monotonic() + args.grace
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if child.poll() is None:
            child.kill()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
