"""`streamctl login` in a pseudo-terminal: the code, the link and the QR code are on screen."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

from streamctl.cli.login import qr_block
from tests.cli.conftest import STREAMCTL, AccessServer

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def _read_until(fd: int, pattern: re.Pattern[str], screen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen.append(chunk.decode(errors="replace"))
        text = ANSI.sub("", "".join(screen)).replace("\r", "")
        if pattern.search(text):
            return text
    raise AssertionError("not on screen:\n" + ANSI.sub("", "".join(screen)))


def test_login_in_a_terminal_shows_code_and_qr(access_server: AccessServer, new_user: object) -> None:
    user = new_user("tty")  # type: ignore[operator]
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [STREAMCTL, "login", "--server", access_server.url],
        stdin=slave, stdout=slave, stderr=slave, env={**user.env(), "TERM": "xterm"},
        close_fds=True,
    )
    os.close(slave)
    screen: list[str] = []
    try:
        text = _read_until(master, re.compile(r"one-time code: (\S+)[\s\S]*Waiting"), screen, 60)
        code = re.search(r"one-time code: (\S+)", text).group(1)  # type: ignore[union-attr]
        assert f"Then open: {access_server.url}/device" in text
        # The QR block on screen is exactly the QR code of verification_uri_complete.
        expected = qr_block(f"{access_server.url}/device?user_code={code}")
        assert expected.strip("\n") in text
        assert "left" in text  # the spinner shows the time left
        # No desktop browser in this environment: no offer to open one.
        assert "Press Enter" not in text
        assert access_server.approve_device(code, "alice") == 200
        text = _read_until(master, re.compile(r"Logged in to .* as alice"), screen, 60)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)


def test_login_offers_the_browser_when_there_is_one(access_server: AccessServer,
                                                   new_user: object) -> None:
    user = new_user("desktop")  # type: ignore[operator]
    opened = user.home / "opened.txt"
    browser = user.home / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {opened}\n')
    browser.chmod(0o755)
    master, slave = pty.openpty()
    env = {**user.env(), "TERM": "xterm", "DISPLAY": ":0", "BROWSER": str(browser)}
    env.pop("CI", None)
    env.pop("SSH_CONNECTION", None)
    process = subprocess.Popen(
        [STREAMCTL, "login", "--server", access_server.url],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
    )
    os.close(slave)
    screen: list[str] = []
    try:
        text = _read_until(master, re.compile(r"Press Enter to open .* in your browser"),
                           screen, 60)
        code = re.search(r"one-time code: (\S+)", text).group(1)  # type: ignore[union-attr]
        os.write(master, b"\n")
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text() == f"{access_server.url}/device?user_code={code}"
        assert access_server.approve_device(code, "alice") == 200
        _read_until(master, re.compile(r"Logged in to .* as alice"), screen, 60)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
