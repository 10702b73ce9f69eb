"""In-process checks of the small pieces: durations, times, profiles file, keyring timeout."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamctl.cli.common import format_window, parse_duration, parse_time
from streamctl.cli.exit_codes import ExitCode, UsageProblem, exit_code_for, help_epilog
from streamctl.client import errors
from streamctl.client.credentials import exclusive_lock
from streamctl.client.profiles import Config, ConfigError, load_config, save_config
from streamctl.client.token_store import KeyringUnavailable, _with_timeout
from streamctl.client.tokens import TokenSet


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("2h", 7200), ("1d", 86400),
])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m", "1x", "-5m"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageProblem) as caught:
        parse_duration(text, what="--ttl")
    assert exit_code_for(caught.value) == ExitCode.USAGE


def test_times_absolute_and_relative() -> None:
    assert parse_time("2026-01-31T14:00Z") == datetime(2026, 1, 31, 14, 0, tzinfo=UTC)
    ago = parse_time("-15m").timestamp()
    assert abs(ago - (time.time() - 900)) < 5
    with pytest.raises(UsageProblem):
        parse_time("yesterday-ish")
    assert format_window("2026-01-31T14:00:00Z", "2026-01-31T14:30:00Z") == (
        "2026-01-31 14:00-14:30Z"
    )


def test_profiles_round_trip_and_refuse_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = Config(default_profile="prod")
    config.set("prod", "server", "https://access.example.com")
    config.set("weird name", "cluster", 'a "quoted" value')
    save_config(config, path)
    again = load_config(path)
    assert again.default_profile == "prod"
    assert again.profile("prod") == {"server": "https://access.example.com"}
    assert again.profile("weird name") == {"cluster": 'a "quoted" value'}
    with pytest.raises(ConfigError):
        config.set("prod", "password", "x")
    with pytest.raises(ConfigError):
        config.set("prod", "server", "ftp://nope")


def test_a_hung_keyring_call_times_out() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(KeyringUnavailable, match=r"did not answer within 0\.2s"):
        _with_timeout(lambda: release.wait(30), 0.2)
    assert time.monotonic() - started < 10
    release.set()


def test_refresh_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "p.lock"
    order: list[str] = []
    with exclusive_lock(lock):
        def other() -> None:
            with exclusive_lock(lock):
                order.append("second")

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]


def test_token_set_expiry_and_damaged_entries() -> None:
    tokens = TokenSet(access_token="a", expires_at=time.time() + 10)
    assert tokens.expired()  # inside the refresh margin
    assert not tokens.expired(margin=0)
    assert TokenSet.from_json(tokens.to_json()) == tokens
    with pytest.raises(errors.TokenStorageError):
        TokenSet.from_json("{not json")


def test_every_exit_code_is_documented() -> None:
    epilog = help_epilog(full=True)
    for code in ExitCode:
        assert f"{int(code):>3}  " in epilog
    assert exit_code_for(errors.ServerUnreachable("x")) == ExitCode.SERVER_UNREACHABLE
    assert exit_code_for(errors.TokenExpired("x")) == ExitCode.NOT_LOGGED_IN
    assert exit_code_for(errors.ApprovalRequired("x")) == ExitCode.NOT_AUTHORIZED
    assert exit_code_for(errors.GrantInvalid("x")) == ExitCode.DENIED_OR_EXPIRED
    assert exit_code_for(errors.Conflict("x")) == ExitCode.ERROR


def test_a_grant_signed_by_an_unknown_key_is_refused() -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from streamctl.client.grant_verify import verify_grant_token

    key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": "https://issuer", "aud": "kafka-local", "sub": "alice", "jti": "g1",
              "iat": now, "nbf": now, "exp": now + 600, "streamctl": {}}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "rogue"})
    other = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(other.public_key()))
    jwks = {"keys": [{**jwk, "kid": "real", "alg": "ES256", "use": "sig"}]}
    with pytest.raises(errors.GrantInvalid) as caught:
        verify_grant_token(token, jwks, issuer="https://issuer", audience="kafka-local")
    assert "unknown key id 'rogue'" in caught.value.message
    assert exit_code_for(caught.value) == ExitCode.DENIED_OR_EXPIRED
    # Same kid, wrong key: the signature check fails.
    jwks["keys"][0]["kid"] = "rogue"
    with pytest.raises(errors.GrantInvalid, match="bad signature"):
        verify_grant_token(token, jwks, issuer="https://issuer", audience="kafka-local")
