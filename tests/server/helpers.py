"""Helpers for access-server tests: starter folders, real server processes, device-flow logins."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher

from streamctl.server.starter import StarterResult, write_starter

REPO = Path(__file__).resolve().parents[2]
SUPERVISOR = REPO / "tests" / "harness" / "supervisor.py"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-2"}
#: Argon2id with small cost parameters: the same code path, a fraction of the CPU per login.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_server_dir(
    folder: Path, database_url: str, issuer_url: str, **settings: Any
) -> StarterResult:
    """A starter folder with fixed dev passwords and fast device-flow timings."""
    extra: dict[str, object] = {"device_poll_interval_seconds": 1}
    extra.update(settings)
    port = int(issuer_url.rsplit(":", 1)[1]) if re.search(r":\d+$", issuer_url) else 8600
    return write_starter(
        folder,
        issuer_url=issuer_url,
        database_url=database_url,
        passwords=dict(PASSWORDS),
        port=port,
        extra=extra,
        hasher=CHEAP_HASHER,
    )


def device_login(client: Any, username: str, password: str) -> dict[str, Any]:
    """Run the device flow against a client (TestClient or httpx.Client) and return the tokens."""
    start = client.post("/oauth/device_authorization", data={"client_id": "streamctl"})
    assert start.status_code == 200, start.text
    code = start.json()
    page = client.post(
        "/device",
        data={"user_code": code["user_code"], "username": username, "password": password,
              "action": "approve"},
    )
    assert page.status_code == 200, page.text
    tokens = client.post(
        "/oauth/token",
        data={"grant_type": DEVICE_GRANT, "device_code": code["device_code"],
              "client_id": "streamctl"},
    )
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ServerProcess:
    """A real `streamctl server run` on a loopback port, under the harness watchdog."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_server(config_path: Path, port: int, timeout: float = 30.0) -> Iterator[ServerProcess]:
    """Start the console script, wait for /healthz, stop it (SIGTERM) on exit."""
    log_path = config_path.parent / f"server-{port}.log"
    exe = Path(sys.executable).parent / "streamctl"
    cmd = [sys.executable, str(SUPERVISOR), "--parent", str(os.getpid()), "--grace", "5", "--",
           str(exe), "server", "run", "--config", str(config_path), "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(url, proc, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout} s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
