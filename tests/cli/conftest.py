"""Fixtures for CLI tests: a real access server process and isolated user homes.

Every command runs through the installed console script (`.venv/bin/streamctl`)
in a subprocess, with HOME, XDG dirs and the keyring backend pointed at a temp
directory, so nothing touches the developer's own login.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

STREAMCTL = str(Path(sys.executable).with_name("streamctl"))
PASSWORDS = {"alice": "alice-test-pw", "bob": "bob-test-pw"}
BOT_ID, BOT_SECRET = "ci-bot", "ci-bot-test-secret"
#: A keyring backend that really stores secrets (in a file under the temp HOME).
PLAINTEXT_KEYRING = "keyrings.alt.file.PlaintextKeyring"
NO_KEYRING = "keyring.backends.fail.Keyring"
CODE_RE = re.compile(r"one-time code: ([A-Z0-9]{4}-[A-Z0-9]{4}|[A-Z0-9-]{6,})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AccessServer:
    """A running `streamctl server run` process."""

    url: str
    folder: Path
    process: subprocess.Popen[bytes]
    log: Path

    def approve_device(self, user_code: str, username: str, action: str = "approve") -> int:
        """Sign in on the verification page with a plain HTTP client, as a person would."""
        response = httpx.post(
            f"{self.url}/device",
            data={"user_code": user_code, "username": username,
                  "password": PASSWORDS[username], "action": action},
            timeout=30,
        )
        return response.status_code


def start_server(folder: Path, bootstrap: str | None = None,
                 overrides: dict[str, object] | None = None) -> AccessServer:
    """`streamctl server init` + `server run` on a free port; waits until it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STREAMCTL_ALICE_PASSWORD": PASSWORDS["alice"],
           "STREAMCTL_BOB_PASSWORD": PASSWORDS["bob"]}
    subprocess.run(
        [STREAMCTL, "server", "init", str(folder), "--issuer-url", url, "--port", str(port)],
        env=env, check=True, capture_output=True,
    )
    config_path = folder / "server.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["device_poll_interval_seconds"] = 1  # keep device logins in tests short
    config.update(overrides or {})
    secret_hash = subprocess.run(
        [STREAMCTL, "server", "hash-secret"], input=BOT_SECRET.encode(), env=env, check=True,
        capture_output=True,
    ).stdout.decode().strip()
    config["services"] = [{"client_id": BOT_ID, "secret_hash": secret_hash}]
    config_path.write_text(yaml.safe_dump(config))
    policy_path = folder / "policy.yaml"
    policy = yaml.safe_load(policy_path.read_text())
    if bootstrap:
        for cluster in policy["clusters"].values():
            cluster["bootstrap"] = bootstrap
    policy["roles"]["engineer"]["members"].append(BOT_ID)
    # A topic family the tests may create and write freely.
    policy["roles"]["engineer"]["grants"].append(
        {"topics": ["t-*"], "operations": ["read", "write", "create", "describe"]}
    )
    if bootstrap:
        policy["roles"]["engineer"]["grants"].append(
            {"topics": ["payments.*"], "operations": ["read", "write", "describe"]}
        )
    policy_path.write_text(yaml.safe_dump(policy))
    return run_server(folder, url, env)


def run_server(folder: Path, url: str, env: dict[str, str] | None = None) -> AccessServer:
    """Start (or restart) the server of an initialised folder and wait until it answers."""
    env = env or {**os.environ}
    config_path = folder / "server.yaml"
    log = folder / "server.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [STREAMCTL, "server", "run", "--config", str(config_path)],
            stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v1/login-config", timeout=2).status_code == 200:
                return AccessServer(url, folder, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")


def stop_server(server: AccessServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def access_server(kafka: object,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccessServer]:
    """One access server (SQLite, built-in issuer, users alice and bob, the harness broker
    as its cluster) shared by the CLI tests."""
    server = start_server(tmp_path_factory.mktemp("access-server") / "srv",
                          bootstrap=kafka.bootstrap)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        stop_server(server)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@dataclass
class User:
    """One person's machine: their own HOME, config dir, keyring file and data dir."""

    home: Path
    keyring_backend: str = PLAINTEXT_KEYRING
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCTL_")}
        env.update({
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "PYTHON_KEYRING_BACKEND": self.keyring_backend,
            "NO_COLOR": "1",
            "COLUMNS": "200",
        })
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120,
            **env: str) -> Result:
        """Run the console script and capture its output."""
        done = subprocess.run(
            [STREAMCTL, *args], input=stdin.encode() if stdin is not None else None,
            capture_output=True, env=self.env(**env), timeout=timeout,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "streamctl" / "config.toml"

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "streamctl"

    @property
    def keyring_file(self) -> Path:
        return self.home / ".local" / "share" / "python_keyring" / "keyring_pass.cfg"


def read_code(stream: object, sink: list[str], deadline: float) -> str:
    """Read a login's stderr until the one-time code shows up."""
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        sink.append(text)
        found = CODE_RE.search(text)
        if found:
            return found.group(1)
    raise AssertionError("no one-time code in:\n" + "".join(sink))


def device_login(user: User, server: AccessServer, username: str, *args: str,
                 action: str = "approve") -> Result:
    """`streamctl login` with the device flow, approved on the verification page over HTTP."""
    process = subprocess.Popen(
        [STREAMCTL, "login", "--server", server.url, "--no-browser", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=user.env(),
    )
    seen: list[str] = []
    assert process.stderr is not None
    code = read_code(process.stderr, seen, time.monotonic() + 60)
    assert server.approve_device(code, username, action) in (200, 303)
    out, err = process.communicate(timeout=90)
    return Result(process.returncode, out.decode(), "".join(seen) + err.decode())


@pytest.fixture
def new_user(tmp_path: Path) -> Iterator[object]:
    """Make a fresh user home: `new_user("alice")`."""
    made: list[User] = []

    def make(name: str, keyring_backend: str = PLAINTEXT_KEYRING) -> User:
        home = tmp_path / f"home-{name}-{len(made)}"
        home.mkdir()
        user = User(home, keyring_backend)
        made.append(user)
        return user

    yield make


@pytest.fixture(scope="session")
def alice_session(access_server: AccessServer,
                  tmp_path_factory: pytest.TempPathFactory) -> User:
    """Alice, logged in once for the whole run (tests that only need a login reuse her)."""
    user = User(tmp_path_factory.mktemp("alice-home"))
    result = device_login(user, access_server, "alice")
    assert result.code == 0, result.err
    return user


@pytest.fixture(scope="session")
def bob_session(access_server: AccessServer,
                tmp_path_factory: pytest.TempPathFactory) -> User:
    user = User(tmp_path_factory.mktemp("bob-home"))
    result = device_login(user, access_server, "bob")
    assert result.code == 0, result.err
    return user
