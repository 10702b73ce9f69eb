"""Check a grant token against the access server's JWKS before a tunnel relies on it.

The checks themselves (algorithm allow-list, key id, signature, issuer,
audience, expiry, not-before) are the shared ones in `streamctl.policy.token`,
the same the server and the tunnel use; this wrapper turns a refusal into the
client's typed error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from streamctl.client.errors import GrantInvalid
from streamctl.policy.grant import Grant
from streamctl.policy.token import TokenError
from streamctl.policy.token import verify_grant_token as _verify


def verify_grant_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
) -> Grant:
    """The verified grant, or GrantInvalid naming the check that failed (never the token)."""
    try:
        return _verify(token, jwks, issuer, audience, now=now)
    except TokenError as exc:
        raise GrantInvalid(
            f"the grant from the access server failed verification: {exc}",
            hint="do not use it; check --server, then try again or tell your administrator",
            code="grant_invalid",
        ) from exc


def seconds_left(grant: Grant, now: float | None = None) -> float:
    """How long the grant still runs, for countdowns and deadlines."""
    return grant.expires_at - (time.time() if now is None else now)
