"""The tokens one login yields, and how they are (de)serialised for a token store."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from streamctl.client.errors import TokenStorageError

#: Refresh this many seconds before the access token's expiry, so a request never races it.
EXPIRY_MARGIN_S = 30.0


@dataclass(frozen=True)
class TokenSet:
    """An access token with what is needed to renew it; never printed or logged."""

    access_token: str
    expires_at: float
    refresh_token: str | None = None
    token_endpoint: str = ""
    client_id: str = "streamctl"
    issuer: str = ""

    def expired(self, now: float | None = None, margin: float = EXPIRY_MARGIN_S) -> bool:
        """True when the access token is gone or about to be, so callers refresh first."""
        return (time.time() if now is None else now) + margin >= self.expires_at

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        """Parse a stored token set; a damaged entry reads as a storage error, not a crash."""
        try:
            raw = json.loads(text)
            return cls(
                access_token=str(raw["access_token"]),
                expires_at=float(raw["expires_at"]),
                refresh_token=raw.get("refresh_token"),
                token_endpoint=str(raw.get("token_endpoint", "")),
                client_id=str(raw.get("client_id", "streamctl")),
                issuer=str(raw.get("issuer", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenStorageError(
                "the stored login is damaged", hint="run `streamctl login` again"
            ) from exc

    @classmethod
    def from_token_response(
        cls,
        body: Mapping[str, Any],
        *,
        token_endpoint: str,
        client_id: str,
        issuer: str,
        previous_refresh: str | None = None,
        now: float | None = None,
    ) -> TokenSet:
        """Build from an OAuth token response (RFC 6749 5.1); keep the old refresh token if none."""
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token response has no access_token")
        expires_in = body.get("expires_in", 300)
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            lifetime = 300.0
        refresh = body.get("refresh_token")
        return cls(
            access_token=access,
            expires_at=(time.time() if now is None else now) + lifetime,
            refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
            token_endpoint=token_endpoint,
            client_id=client_id,
            issuer=issuer,
        )

    def with_access(self, access_token: str, expires_at: float) -> TokenSet:
        return replace(self, access_token=access_token, expires_at=expires_at)
