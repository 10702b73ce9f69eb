"""Every expected failure: one line on stderr saying what to do next, and its documented code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamctl.cli.exit_codes import ExitCode
from tests.cli.conftest import (
    AccessServer,
    User,
    device_login,
    free_port,
    start_server,
    stop_server,
)

POISON_REFRESH = (
    "import keyring, json, sys; t = json.loads(keyring.get_password('streamctl', 'default'));"
    "t['expires_at'] = 0; t['refresh_token'] = 'not-a-real-refresh-token';"
    "keyring.set_password('streamctl', 'default', json.dumps(t))"
)


def one_line(result: object, code: int) -> str:
    """The result failed with `code` and said so in exactly one line, without a traceback."""
    assert result.code == code, (result.code, result.out, result.err)  # type: ignore[attr-defined]
    lines = result.err_lines  # type: ignore[attr-defined]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err  # type: ignore[attr-defined]
    return str(lines[0])


def test_usage_errors_exit_2(new_user: object) -> None:
    user = new_user("usage")  # type: ignore[operator]
    line = one_line(user.run("whoami", "--bogus"), ExitCode.USAGE)
    assert line == "error: No such option: --bogus; see `streamctl whoami --help`"
    line = one_line(user.run("grant", "request", "orders", "--ttl", "5 minutes"), ExitCode.USAGE)
    assert "is not a duration" in line and "30m" in line
    line = one_line(user.run("whoami", "-o", "yaml"), ExitCode.USAGE)
    assert "--output 'yaml'" in line
    line = one_line(user.run("tail", "orders", "--from-beginning", "--offset", "3"),
                    ExitCode.USAGE)
    assert "only one of" in line
    line = one_line(user.run("config", "set", "colour", "blue"), ExitCode.USAGE)
    assert "unknown setting 'colour'" in line
    line = one_line(user.run("request-approval", "payments"), ExitCode.USAGE)
    assert "--write" in line


def test_not_logged_in_and_no_server_exit_4(access_server: AccessServer,
                                           new_user: object) -> None:
    user = new_user("fresh")  # type: ignore[operator]
    line = one_line(user.run("whoami"), ExitCode.NOT_LOGGED_IN)
    assert "no access server configured" in line and "--server URL" in line
    line = one_line(user.run("grant", "ls", "--server", access_server.url),
                    ExitCode.NOT_LOGGED_IN)
    assert line == "error: not logged in (profile 'default'); run `streamctl login`"


def test_server_unreachable_exits_5_and_debug_shows_traceback(new_user: object) -> None:
    user = new_user("offline")  # type: ignore[operator]
    dead = f"http://127.0.0.1:{free_port()}"
    line = one_line(user.run("login", "--server", dead), ExitCode.SERVER_UNREACHABLE)
    assert f"cannot reach the access server at {dead}" in line
    debug = user.run("--debug", "login", "--server", dead)
    assert debug.code == ExitCode.SERVER_UNREACHABLE
    assert "Traceback" in debug.err and "ConnectError" in debug.err


def test_refused_grants_exit_3_with_the_next_command(alice_session: User) -> None:
    line = one_line(alice_session.run("grant", "request", "secret-topic", "--read"),
                    ExitCode.NOT_AUTHORIZED)
    assert "no rule of role(s) engineer allows read on secret-topic" in line
    line = one_line(alice_session.run("grant", "request", "payments", "--write"),
                    ExitCode.NOT_AUTHORIZED)
    assert "need an approval" in line
    assert "run `streamctl request-approval payments --write" in line


def test_unknown_ids_exit_6(alice_session: User) -> None:
    line = one_line(alice_session.run("grant", "revoke", "no-such-grant"), ExitCode.NOT_FOUND)
    assert "no-such-grant" in line
    line = one_line(alice_session.run("approvals", "show", "ap_nope"), ExitCode.NOT_FOUND)
    assert "ap_nope" in line


def test_refused_refresh_exits_4(access_server: AccessServer, new_user: object) -> None:
    user = new_user("stale")  # type: ignore[operator]
    assert device_login(user, access_server, "alice").code == 0
    subprocess.run([sys.executable, "-c", POISON_REFRESH], env=user.env(), check=True)
    line = one_line(user.run("whoami"), ExitCode.NOT_LOGGED_IN)
    assert line == (
        "error: your login has expired and could not be renewed; "
        "run `streamctl login` to sign in again"
    )


def test_broken_config_file_is_named(new_user: object) -> None:
    user = new_user("badconfig")  # type: ignore[operator]
    user.config_file.parent.mkdir(parents=True)
    user.config_file.write_text("[profiles.default\nserver = ")
    line = one_line(user.run("whoami"), ExitCode.ERROR)
    assert str(user.config_file) in line and "fix or delete the file" in line


@pytest.fixture(scope="module")
def short_code_server(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A server whose device codes expire after 2 seconds."""
    server = start_server(tmp_path_factory.mktemp("short") / "srv",
                          overrides={"device_code_ttl_seconds": 2})
    yield server
    stop_server(server)


def test_device_code_expiry_exits_4(short_code_server: AccessServer, new_user: object) -> None:
    user = new_user("slow")  # type: ignore[operator]
    result = user.run("login", "--server", short_code_server.url, "--no-browser")
    assert result.code == ExitCode.NOT_LOGGED_IN
    assert "one-time code:" in result.err  # the code was shown before it ran out
    assert result.err_lines[-1] == (
        "error: the login code expired before it was approved; "
        "run `streamctl login` again and approve it within the time shown"
    )


def test_profiles_and_env_overrides(access_server: AccessServer, new_user: object,
                                    tmp_path: Path) -> None:
    user = new_user("profiles")  # type: ignore[operator]
    assert user.run("config", "set", "server", access_server.url, "--profile", "prod").code == 0
    assert user.run("config", "use", "prod").code == 0
    shown = json.loads(user.run("config", "show", "-o", "json").out)
    assert shown["default_profile"] == "prod"
    assert shown["profiles"]["prod"]["server"] == access_server.url
    # The default profile is used unless STREAMCTL_PROFILE / --profile say otherwise.
    line = one_line(user.run("whoami"), ExitCode.NOT_LOGGED_IN)
    assert "profile 'prod'" in line
    line = one_line(user.run("whoami", STREAMCTL_PROFILE="staging"), ExitCode.NOT_LOGGED_IN)
    assert "no access server configured for profile 'staging'" in line
    line = one_line(user.run("whoami", "--profile", "bad/name"), ExitCode.USAGE)
    assert "profile name 'bad/name' is not valid" in line


def test_denied_approval_exits_7_with_the_reason(alice_session: User, bob_session: User) -> None:
    asked = alice_session.run("request-approval", "payments", "--write", "--reason", "hotfix",
                              "--start", "+10m", "--reviewers", "bob", "--nowait", "-o", "json")
    assert asked.code == 0, asked.err
    approval = json.loads(asked.out)
    assert approval["status"] == "pending" and approval["reviewers"] == ["bob"]
    assert approval["window_start"] > approval["created_at"]
    missing_reason = bob_session.run("approvals", "deny", approval["id"])
    assert missing_reason.code == ExitCode.USAGE
    denied = bob_session.run("approvals", "deny", approval["id"], "--reason", "use staging")
    assert denied.code == 0 and f"Denied {approval['id']}" in denied.out
    line = one_line(alice_session.run("approvals", "show", approval["id"], "--wait"),
                    ExitCode.DENIED_OR_EXPIRED)
    assert f"approval {approval['id']} was denied (denied by bob: use staging)" in line
    again = one_line(bob_session.run("approvals", "approve", approval["id"]), ExitCode.ERROR)
    assert "only pending requests are reviewed" in again
