"""Login, logout, whoami/status and token storage, through the real console script and server."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading

from tests.cli.conftest import (
    BOT_ID,
    BOT_SECRET,
    NO_KEYRING,
    AccessServer,
    User,
    device_login,
)

KEYRING_GET = (
    "import keyring, json, sys; v = keyring.get_password('streamctl', sys.argv[1]);"
    "print(v if v is not None else '')"
)
KEYRING_EXPIRE = (
    "import keyring, json, sys; t = json.loads(keyring.get_password('streamctl', sys.argv[1]));"
    "t['expires_at'] = 0; keyring.set_password('streamctl', sys.argv[1], json.dumps(t))"
)


def keyring_entry(user: User, profile: str = "default") -> str:
    done = subprocess.run([sys.executable, "-c", KEYRING_GET, profile], env=user.env(),
                          capture_output=True, check=True)
    return done.stdout.decode().strip()


def test_device_login_keeps_tokens_in_keyring_then_logout_clears_them(
    access_server: AccessServer, new_user: object
) -> None:
    user = new_user("alice")  # type: ignore[operator]
    result = device_login(user, access_server, "alice")
    assert result.code == 0, result.err
    assert "Logged in to" in result.out and "as alice" in result.out
    assert "roles: engineer" in result.out
    stored = json.loads(keyring_entry(user))
    assert stored["access_token"] and stored["refresh_token"]
    assert f'server = "{access_server.url}"' in user.config_file.read_text()

    who = user.run("whoami", "-o", "json")
    assert who.code == 0, who.err
    info = json.loads(who.out)
    assert info["subject"] == "alice" and info["roles"] == ["engineer"]
    assert "PlaintextKeyring" in info["token_storage"]

    out = user.run("logout")
    assert out.code == 0 and "Logged out of profile default" in out.out
    assert keyring_entry(user) == ""
    after = user.run("whoami")
    assert after.code == 4
    assert after.err_lines == ["error: not logged in (profile 'default'); run `streamctl login`"]


def test_without_keyring_login_says_so_and_works_for_the_process(
    access_server: AccessServer, new_user: object
) -> None:
    user = new_user("nokeyring", NO_KEYRING)  # type: ignore[operator]
    result = device_login(user, access_server, "alice")
    assert result.code == 0, result.err
    assert "No usable OS keyring" in result.err
    assert "--insecure-storage" in result.err
    # The login worked within that process: the server answered whoami with alice's token.
    assert "as alice" in result.out
    assert "memory (this process only)" in result.err
    # ...and nothing was kept for the next command.
    later = user.run("whoami")
    assert later.code == 4
    assert "No usable OS keyring" in later.err
    assert later.err_lines[-1].startswith("error: not logged in")


def test_insecure_storage_writes_a_0600_file(access_server: AccessServer,
                                            new_user: object) -> None:
    user = new_user("filestore", NO_KEYRING)  # type: ignore[operator]
    result = device_login(user, access_server, "alice", "--insecure-storage")
    assert result.code == 0, result.err
    token_file = user.data_dir / "tokens" / "default.tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert json.loads(token_file.read_text())["refresh_token"]
    assert 'token_storage = "file"' in user.config_file.read_text()
    who = user.run("whoami")
    assert who.code == 0 and "alice" in who.out
    assert "No usable OS keyring" not in who.err  # the file store is what the user asked for
    assert user.run("logout").code == 0
    assert not token_file.exists()


def test_login_denied_on_the_page(access_server: AccessServer, new_user: object) -> None:
    user = new_user("denied")  # type: ignore[operator]
    result = device_login(user, access_server, "alice", action="deny")
    assert result.code == 4
    assert result.err_lines[-1] == (
        "error: the login was denied on the verification page; "
        "run `streamctl login` again and approve the request"
    )


def test_expired_access_token_is_refreshed_once_by_concurrent_commands(
    access_server: AccessServer, new_user: object
) -> None:
    user = new_user("refresh")  # type: ignore[operator]
    assert device_login(user, access_server, "alice").code == 0
    before = json.loads(keyring_entry(user))
    subprocess.run([sys.executable, "-c", KEYRING_EXPIRE, "default"], env=user.env(), check=True)
    results: list[object] = [None] * 4

    def run(i: int) -> None:
        results[i] = user.run("whoami", "-o", "json")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Refresh tokens are single use on this server: without the lock, all but one would fail.
    for r in results:
        assert r.code == 0, r.err  # type: ignore[attr-defined]
        assert json.loads(r.out)["subject"] == "alice"  # type: ignore[attr-defined]
    after = json.loads(keyring_entry(user))
    assert after["refresh_token"] != before["refresh_token"]
    assert after["expires_at"] > 0


def test_bot_login_with_client_credentials_keeps_tokens_in_memory(
    access_server: AccessServer, new_user: object, tmp_path: object
) -> None:
    user = new_user("bot")  # type: ignore[operator]
    secret_file = user.home / "secret"
    secret_file.write_text(BOT_SECRET + "\n")
    result = user.run("login", "--server", access_server.url, "--client-id", BOT_ID,
                      "--client-secret-file", str(secret_file))
    assert result.code == 0, result.err
    assert f"as {BOT_ID}" in result.out and "(service;" in result.out
    assert keyring_entry(user) == ""  # nothing stored for a bot
    # Every bot command authenticates itself from the environment.
    who = user.run("whoami", "-o", "json", STREAMCTL_SERVER=access_server.url,
                   STREAMCTL_CLIENT_ID=BOT_ID, STREAMCTL_CLIENT_SECRET_FILE=str(secret_file))
    assert who.code == 0, who.err
    assert json.loads(who.out)["kind"] == "service"
    secret_file.write_text("wrong-secret")
    bad = user.run("whoami", STREAMCTL_SERVER=access_server.url,
                   STREAMCTL_CLIENT_ID=BOT_ID, STREAMCTL_CLIENT_SECRET_FILE=str(secret_file))
    assert bad.code == 4
    assert len(bad.err_lines) == 1 and "refused client 'ci-bot'" in bad.err


def test_status_lists_identity_and_active_grants(alice_session: User) -> None:
    grant = alice_session.run("grant", "request", "orders", "--read", "--ttl", "5m", "-o", "json")
    assert grant.code == 0, grant.err
    grant_id = json.loads(grant.out)["grant_id"]
    status = alice_session.run("status", "-o", "json")
    assert status.code == 0, status.err
    info = json.loads(status.out)
    assert info["subject"] == "alice"
    assert grant_id in [g["grant_id"] for g in info["active_grants"]]
    text = alice_session.run("status")
    assert grant_id in text.out and "active grants:" in text.out


def test_grant_revoke_and_listing(alice_session: User) -> None:
    grant_id = json.loads(alice_session.run("grant", "request", "orders", "--read", "-o",
                                            "json").out)["grant_id"]
    revoked = alice_session.run("grant", "revoke", grant_id)
    assert revoked.code == 0 and f"Grant {grant_id} revoked." in revoked.out
    status = json.loads(alice_session.run("grant", "status", grant_id, "-o", "json").out)
    assert status["revoked"] is True and status["active"] is False
    active = json.loads(alice_session.run("grant", "ls", "-o", "json").out)
    assert grant_id not in [g["grant_id"] for g in active]
    everything = alice_session.run("grant", "ls", "--all")
    assert grant_id in everything.out and "revoked" in everything.out
