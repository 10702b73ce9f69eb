"""RFC 8628 device authorization, its token-endpoint polling, and the other grant types.

Device codes are random, stored as SHA-256 only and redeemed once (an atomic
status change); user codes are 8 letters from an alphabet without vowels or
look-alikes, shown as BCDF-GHJK. Failed user-code or password attempts on the
verification page are counted per client address and throttled (section 5.1).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from streamctl.server.auth import issue_access_token
from streamctl.server.errors import ApiError
from streamctl.server.state import PUBLIC_CLIENT_ID, ServerState
from streamctl.server.store import DeviceAuthorization, RefreshToken, Throttle, as_utc

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: No vowels (no words), no look-alikes (0/O, 1/I/L, 5/S, 2/Z, 8/B kept out where ambiguous).
USER_CODE_ALPHABET = "BCDFGHJKMNPQRTVWXY"
USER_CODE_LENGTH = 8
SLOW_DOWN_STEP = 5

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown users against, made once, on first need."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def oauth_error(error: str, message: str, status: int = 400) -> ApiError:
    """An RFC 6749 section 5.2 error (the body also carries message/hint per our contract)."""
    return ApiError(status, error, message)


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def normalize_user_code(text: str) -> str:
    """What the user typed, upper-cased, without dashes or spaces."""
    return "".join(c for c in text.upper() if c.isalnum())


def verify_password(password_hash: str | None, password: str) -> bool:
    """Argon2 check; an unknown user still costs one hash so timing says nothing."""
    try:
        matched = _hasher.verify(password_hash or _dummy_hash(), password)
        return matched and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """An argon2id hash; its cost parameters travel inside it, so verification follows them."""
    return (hasher or _hasher).hash(password)


def start(state: ServerState, session: Session, client_id: str, scope: str) -> dict[str, Any]:
    """Create a device authorization and answer the device (RFC 8628 section 3.2)."""
    if client_id != PUBLIC_CLIENT_ID:
        raise oauth_error("invalid_client", f"unknown client id {client_id!r}", 401)
    now = state.now()
    device_code = secrets.token_urlsafe(32)
    for _ in range(5):
        user_code = new_user_code()
        taken = session.scalar(
            select(DeviceAuthorization.user_code).where(DeviceAuthorization.user_code == user_code)
        )
        if taken is None:
            break
    else:  # pragma: no cover - 18^8 codes make five collisions in a row impossible in practice
        raise oauth_error("temporarily_unavailable", "could not allocate a user code", 503)
    cfg = state.config
    session.add(
        DeviceAuthorization(
            device_code_hash=_digest(device_code),
            user_code=user_code,
            client_id=client_id,
            scope=scope,
            status="pending",
            created_at=_at(now),
            expires_at=_at(now + cfg.device_code_ttl_seconds),
            interval_seconds=cfg.device_poll_interval_seconds,
        )
    )
    shown = format_user_code(user_code)
    uri = f"{cfg.issuer_url}/device"
    return {
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": uri,
        "verification_uri_complete": f"{uri}?user_code={shown}",
        "expires_in": cfg.device_code_ttl_seconds,
        "interval": cfg.device_poll_interval_seconds,
    }


def _token_pair(
    state: ServerState, session: Session, subject: str, kind: str, client_id: str, scope: str
) -> dict[str, Any]:
    access, ttl = issue_access_token(state, subject, kind, client_id, scope)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    }
    if kind == "user":
        refresh = secrets.token_urlsafe(32)
        now = state.now()
        session.add(
            RefreshToken(
                token_hash=_digest(refresh),
                subject=subject,
                kind=kind,
                client_id=client_id,
                created_at=_at(now),
                expires_at=_at(now + state.config.refresh_token_ttl_seconds),
            )
        )
        body["refresh_token"] = refresh
    return body


def poll(state: ServerState, session: Session, device_code: str, client_id: str) -> dict[str, Any]:
    """The device_code grant: pending, slow_down, denied, expired, or tokens exactly once."""
    row = session.get(DeviceAuthorization, _digest(device_code))
    if row is None or not hmac.compare_digest(row.client_id, client_id):
        raise oauth_error("invalid_grant", "unknown device code")
    now = state.now()
    if row.status == "used":
        raise oauth_error("invalid_grant", "this device code was already used")
    if as_utc(row.expires_at).timestamp() <= now:
        raise oauth_error("expired_token", "the device code expired; start the login again")
    if row.status == "denied":
        raise oauth_error("access_denied", "the sign-in was denied on the verification page")
    if row.status == "pending":
        last = row.last_poll_at
        row.last_poll_at = _at(now)
        if last is not None and now - as_utc(last).timestamp() < row.interval_seconds:
            row.interval_seconds += SLOW_DOWN_STEP
            session.commit()
            raise oauth_error(
                "slow_down", f"polling too fast; wait {row.interval_seconds} s between polls"
            )
        session.commit()
        raise oauth_error("authorization_pending", "waiting for the user to sign in")
    claimed = session.execute(
        update(DeviceAuthorization)
        .where(
            DeviceAuthorization.device_code_hash == row.device_code_hash,
            DeviceAuthorization.status == "approved",
        )
        .values(status="used")
    )
    if getattr(claimed, "rowcount", 0) != 1 or row.subject is None:
        session.rollback()
        raise oauth_error("invalid_grant", "this device code was already used")
    subject = row.subject
    state.recorder.record(
        session, kind="login", subject=subject, outcome="issued", detail={"via": "device_code"}
    )
    return _token_pair(state, session, subject, "user", client_id, row.scope)


def refresh(state: ServerState, session: Session, token: str, client_id: str) -> dict[str, Any]:
    """The refresh_token grant: single use, rotated."""
    digest = _digest(token)
    row = session.get(RefreshToken, digest)
    now = state.now()
    if row is None or not hmac.compare_digest(row.client_id, client_id):
        raise oauth_error("invalid_grant", "unknown refresh token")
    if as_utc(row.expires_at).timestamp() <= now:
        raise oauth_error("invalid_grant", "the refresh token expired; log in again")
    if state.config.user(row.subject) is None:
        raise oauth_error("invalid_grant", f"user {row.subject} is no longer configured")
    claimed = session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == digest, RefreshToken.used_at.is_(None))
        .values(used_at=_at(now))
    )
    if getattr(claimed, "rowcount", 0) != 1:
        session.rollback()
        raise oauth_error("invalid_grant", "this refresh token was already used; log in again")
    return _token_pair(state, session, row.subject, row.kind, client_id, "")


def client_credentials(
    state: ServerState, session: Session, client_id: str, secret: str, scope: str
) -> dict[str, Any]:
    """The client_credentials grant for service identities (no refresh token)."""
    now = state.now()
    key = f"client:{client_id[:100]}"
    if _throttled(state, session, key, now):
        raise oauth_error(
            "too_many_attempts", "too many failed attempts for this client; wait a while", 429
        )
    service = state.config.service(client_id)
    ok = verify_password(service.secret_hash if service else None, secret)
    if service is None or not ok:
        _count_failure(state, session, key, now)
        state.recorder.record(
            session, kind="login", subject=client_id, outcome="refused", detail={"via": "client"}
        )
        session.commit()
        raise oauth_error("invalid_client", "unknown client or wrong secret", 401)
    state.recorder.record(
        session, kind="login", subject=client_id, outcome="issued", detail={"via": "client"}
    )
    return _token_pair(state, session, client_id, "service", client_id, scope)


@dataclass(frozen=True)
class VerificationResult:
    """What the verification page tells the user."""

    ok: bool
    message: str
    status: int = 200


def _throttled(state: ServerState, session: Session, key: str, now: float) -> bool:
    row = session.get(Throttle, key)
    if row is None:
        return False
    if as_utc(row.window_start).timestamp() + state.config.user_code_window_seconds <= now:
        return False
    return row.failures >= state.config.user_code_failures_per_window


def _count_failure(state: ServerState, session: Session, key: str, now: float) -> None:
    row = session.get(Throttle, key, with_for_update=True)
    window = state.config.user_code_window_seconds
    if row is None:
        session.add(Throttle(key=key, window_start=_at(now), failures=1))
    elif as_utc(row.window_start).timestamp() + window <= now:
        row.window_start = _at(now)
        row.failures = 1
    else:
        row.failures += 1


def verify_user(
    state: ServerState,
    session: Session,
    *,
    user_code: str,
    username: str,
    password: str,
    approve: bool,
    client_address: str,
) -> VerificationResult:
    """The verification page's POST: check code and password, then approve or deny."""
    now = state.now()
    key = f"user-code:{client_address}"
    if _throttled(state, session, key, now):
        return VerificationResult(
            False, "Too many failed attempts from your address. Wait a few minutes.", 429
        )
    code = normalize_user_code(user_code)
    row = session.scalar(select(DeviceAuthorization).where(DeviceAuthorization.user_code == code))
    if row is None or row.status != "pending" or as_utc(row.expires_at).timestamp() <= now:
        _count_failure(state, session, key, now)
        return VerificationResult(
            False, "Unknown or expired code. Check the code in your terminal.", 400
        )
    user = state.config.user(username)
    if not verify_password(user.password_hash if user else None, password):
        _count_failure(state, session, key, now)
        state.recorder.record(
            session, kind="login", subject=username, outcome="refused", detail={"via": "password"}
        )
        return VerificationResult(False, "Wrong username or password.", 401)
    row.status = "approved" if approve else "denied"
    row.subject = username
    if approve:
        return VerificationResult(
            True, "Signed in. You can close this page and go back to your terminal."
        )
    return VerificationResult(True, "Sign-in denied. The terminal will be told.")
