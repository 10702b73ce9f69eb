"""Trusting external OIDC issuers (Keycloak, Okta, Entra, Auth0...): discovery, JWKS, claim->roles.

The JWKS of each issuer is fetched through its discovery document and cached;
an unknown kid triggers one refetch (at most every 30 s), so key rotation at
the IdP is picked up without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from streamctl.policy.token import TokenError, verify_jwt
from streamctl.server.config import ExternalIssuer

REFETCH_SECONDS = 30.0
CACHE_SECONDS = 3600.0


@dataclass(frozen=True)
class ExternalIdentity:
    """Who an external token names, and the roles its claim maps to."""

    subject: str
    roles: tuple[str, ...]
    expires_at: float
    issuer: str


class ExternalVerifier:
    """Verifies access tokens of one external issuer."""

    def __init__(self, settings: ExternalIssuer, timeout: float = 5.0) -> None:
        self.settings = settings
        self.timeout = timeout
        #: An unknown kid refetches the JWKS at most this often (a flood of junk kids costs little).
        self.min_refetch_seconds = REFETCH_SECONDS
        self._lock = threading.Lock()
        self._jwks: dict[str, Any] = {"keys": []}
        self._fetched_at = 0.0
        self._discovery: dict[str, Any] | None = None

    def discovery(self) -> dict[str, Any]:
        """The issuer's OpenID configuration (cached), checked to name the same issuer."""
        if self._discovery is None:
            url = self.settings.issuer + "/.well-known/openid-configuration"
            doc = self._get_json(url)
            if str(doc.get("issuer", "")).rstrip("/") != self.settings.issuer:
                raise TokenError(f"discovery at {url} names another issuer")
            self._discovery = doc
        return self._discovery

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = httpx.get(url, timeout=self.timeout, follow_redirects=False)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenError(f"cannot reach the external issuer at {url}") from exc
        if not isinstance(data, dict):
            raise TokenError(f"{url} did not answer a JSON object")
        return data

    def _refresh(self, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            age = now - self._fetched_at
            if (force and age < self.min_refetch_seconds) or (not force and age < CACHE_SECONDS):
                return
            jwks_uri = self.discovery().get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise TokenError("the external issuer's discovery has no jwks_uri")
            self._jwks = self._get_json(jwks_uri)
            self._fetched_at = now

    def verify(self, token: str) -> ExternalIdentity:
        """Verify signature and registered claims, then map the roles claim."""
        self._refresh(force=False)
        try:
            claims = self._verify(token)
        except TokenError as exc:
            if "unknown key id" not in str(exc):
                raise
            self._refresh(force=True)
            claims = self._verify(token)
        subject = claims.get(self.settings.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise TokenError(f"token lacks the '{self.settings.subject_claim}' claim")
        return ExternalIdentity(
            subject=subject,
            roles=self.roles_from(claims),
            expires_at=float(claims["exp"]),
            issuer=self.settings.issuer,
        )

    def _verify(self, token: str) -> dict[str, Any]:
        return verify_jwt(
            token,
            self._jwks,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            required=("iss", "aud", "exp"),
        )

    def roles_from(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        """Roles from the configured claim (a string or list of strings) through the role map."""
        raw = claims.get(self.settings.roles_claim, [])
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles: set[str] = set()
        for value in values:
            roles.update(self.settings.role_map.get(str(value), ()))
        return tuple(sorted(roles))
