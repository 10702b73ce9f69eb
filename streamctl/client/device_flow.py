"""The OAuth 2.0 device authorization grant (RFC 8628), client side.

`start` asks the issuer for a device code; `wait_for_tokens` polls the token
endpoint at the announced interval (plus a margin), backs off on `slow_down`,
and ends with tokens, or with a typed error for `access_denied` and
`expired_token`. Sleeping and the clock are injectable so the loop is testable
and the CLI can draw a spinner between polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from streamctl.client.errors import (
    ClientError,
    DeviceFlowDenied,
    DeviceFlowExpired,
    RequestRejected,
    ServerFailed,
    ServerUnreachable,
)
from streamctl.client.oidc import DEVICE_CODE_GRANT, IssuerMetadata, oauth_error, post_token
from streamctl.client.tokens import TokenSet

#: Added to the server's interval so clock skew never turns polls into slow_down answers.
POLL_MARGIN_S = 0.5
#: RFC 8628 3.5: on slow_down the interval grows by 5 seconds.
SLOW_DOWN_STEP_S = 5.0


@dataclass(frozen=True)
class DeviceAuthorization:
    """What the user needs to approve the login on another device."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_at: float
    interval: float


def start(
    http: httpx.Client, meta: IssuerMetadata, client_id: str, scope: str = "openid offline_access"
) -> DeviceAuthorization:
    """Ask the issuer for a device code and user code (RFC 8628 3.1-3.2)."""
    if not meta.device_authorization_endpoint:
        raise RequestRejected(
            f"the identity provider {meta.issuer} does not offer the device login",
            hint="ask your administrator to enable the OAuth device authorization grant",
        )
    try:
        response = http.post(
            meta.device_authorization_endpoint,
            data={"client_id": client_id, "scope": scope},
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"cannot reach {meta.device_authorization_endpoint} ({type(exc).__name__})"
        ) from exc
    if response.status_code != 200:
        code, description = oauth_error(response)
        raise RequestRejected(f"the device login could not start: {description}", code=code)
    try:
        body = response.json()
        return DeviceAuthorization(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            verification_uri_complete=(
                str(body["verification_uri_complete"])
                if body.get("verification_uri_complete")
                else None
            ),
            expires_at=time.time() + float(body["expires_in"]),
            interval=float(body.get("interval", 5)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerFailed(f"the device authorization answer is malformed ({exc})") from exc


@dataclass
class PollState:
    """What the waiting UI shows: time left and the current interval."""

    seconds_left: float
    interval: float
    polls: int = 0


def wait_for_tokens(
    http: httpx.Client,
    meta: IssuerMetadata,
    auth: DeviceAuthorization,
    client_id: str,
    *,
    on_wait: Callable[[PollState], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> TokenSet:
    """Poll until the user approves, denies, or the code expires (RFC 8628 3.4-3.5)."""
    interval = max(auth.interval, 1.0)
    state = PollState(seconds_left=auth.expires_at - clock(), interval=interval)
    while True:
        deadline = clock() + interval + POLL_MARGIN_S
        while (now := clock()) < deadline:
            state.seconds_left = auth.expires_at - now
            if state.seconds_left <= 0:
                raise _expired()
            if on_wait is not None:
                on_wait(state)
            sleep(min(0.1, deadline - now))
        state.polls += 1
        response = post_token(
            http,
            meta.token_endpoint,
            {"grant_type": DEVICE_CODE_GRANT, "device_code": auth.device_code,
             "client_id": client_id},
        )
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError as exc:
                raise ServerFailed("the token endpoint answered something that is not JSON") \
                    from exc
            return TokenSet.from_token_response(
                body, token_endpoint=meta.token_endpoint, client_id=client_id,
                issuer=meta.issuer,
            )
        code, description = oauth_error(response)
        if code == "authorization_pending":
            continue
        if code == "slow_down":
            interval += SLOW_DOWN_STEP_S
            state.interval = interval
            continue
        if code == "access_denied":
            raise DeviceFlowDenied(
                "the login was denied on the verification page",
                hint="run `streamctl login` again and approve the request",
                code=code,
            )
        if code == "expired_token":
            raise _expired()
        raise ClientError(f"the device login failed: {description}", code=code)


def _expired() -> DeviceFlowExpired:
    return DeviceFlowExpired(
        "the login code expired before it was approved",
        hint="run `streamctl login` again and approve it within the time shown",
        code="expired_token",
    )
